import type { Pool } from '../db/pool.ts';
import * as plans from './plans.ts';
import type { Progress } from './progress.ts';

export interface ReindexDeps {
  pool: Pool;
  progress: Progress;
  /** Aborted (Ctrl-C, SIGTERM): stop after the batch in flight, which is committed. */
  signal?: AbortSignal;
}

export interface ReindexOptions {
  batchSize: number;
  /**
   * Give every row a new version first, so its job rewrites the document even where the index
   * holds its current version (a mapping change, a document deleted by hand, whose tombstone
   * carries a version above the row's). Not needed to fill an empty index.
   */
  bump: boolean;
}

export interface ReindexResult {
  table: string;
  /** Rows enqueued (each has a job waiting or running once this returns). */
  rows: number;
  /** Jobs this run created; the other rows joined a job already waiting for them. */
  jobsCreated: number;
  /** Stopped by the signal before the last batch. */
  interrupted: boolean;
}

const DEADLOCK = '40P01';
const DEADLOCK_RETRIES = 5;

/**
 * Enqueues a sync job for every row of a table, in keyset-paginated batches of primary keys, each
 * batch one short transaction through queue.resync: the jobs, keys and coalescing of the
 * triggers. A row with a job waiting joins it, so a live write and the reindex never make two
 * jobs, and the job runs after both. Rows inserted meanwhile get their jobs from the triggers;
 * rows deleted meanwhile had theirs. Stopped halfway, it has lost nothing: run it again.
 */
export async function enqueueTable(deps: ReindexDeps, shape: plans.TableShape, options: ReindexOptions): Promise<ReindexResult> {
  const { pool, progress, signal } = deps;
  const table = shape.table;
  const qualified = `${table.schema}.${table.table}`;
  const { rows: counted } = await pool.query<{ n: number }>(plans.countRows(shape));
  const total = counted[0]?.n ?? 0;
  progress.start(`reindex ${table.table}`, total);

  const result: ReindexResult = { table: table.table, rows: 0, jobsCreated: 0, interrupted: false };
  const firstPage = plans.keysAfter(shape, true);
  const nextPage = plans.keysAfter(shape, false);
  let after: string | null = null;
  for (;;) {
    if (signal?.aborted) {
      result.interrupted = true;
      break;
    }
    const query = after === null ? { ...firstPage, values: [options.batchSize] } : { ...nextPage, values: [options.batchSize, after] };
    const { rows } = await pool.query<{ key: string }>(query);
    if (rows.length === 0) break;
    const keys: string[] = rows.map((r) => r.key);
    result.jobsCreated += await resyncBatch(pool, qualified, keys, options.bump);
    result.rows += keys.length;
    after = keys.at(-1)!;
    progress.update(result.rows);
    if (rows.length < options.batchSize) break;
  }
  progress.finish({ rows: result.rows, jobsCreated: result.jobsCreated, interrupted: result.interrupted });
  return result;
}

/**
 * One batch in one transaction. Bumping versions takes the rows' version locks as app writes do;
 * in the rare case that makes a deadlock with an app statement, this side retries.
 */
async function resyncBatch(pool: Pool, qualified: string, keys: string[], bump: boolean): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      const { rows } = await pool.query<{ created: number }>({ ...plans.resync, values: [qualified, keys, bump] });
      return rows[0]?.created ?? 0;
    } catch (err) {
      if ((err as { code?: string }).code !== DEADLOCK || attempt >= DEADLOCK_RETRIES) throw err;
    }
  }
}
