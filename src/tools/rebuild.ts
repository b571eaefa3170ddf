import type { Logger } from '../config/logger.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import { describeSearchError, type SearchClient } from '../search/client.ts';
import { indexTemplate, readLayout, versionedIndex, type IndexLayout } from '../search/indices.ts';
import { ToolError } from './errors.ts';
import * as plans from './plans.ts';
import { enqueueTable, type ReindexDeps } from './reindex.ts';
import { databaseNow } from './tables.ts';

export interface RebuildDeps extends ReindexDeps {
  search: SearchClient;
  log: Logger;
  /** Give up waiting when no job of the table settles for this long (is the service running?). */
  stallTimeoutMs?: number;
  pollIntervalMs?: number;
}

export interface RebuildOptions {
  alias: string;
  batchSize: number;
  /**
   * Allowed to delete a concrete index that carries the alias's name (the layout of older sync
   * code): the alias can only take over that name in the request that removes the index, so no
   * old index is left to roll back to.
   */
  replaceIndex: boolean;
}

export type RebuildResult =
  | {
      status: 'swapped';
      table: string;
      alias: string;
      newIndex: string;
      /** What the alias pointed at before, kept for rollback (empty when a concrete index was replaced). */
      previous: string[];
      /** A concrete index deleted by the swap (with replaceIndex). */
      removedIndex: string | null;
      rows: number;
      documents: number;
      resumed: boolean;
    }
  | { status: 'interrupted'; table: string; alias: string; newIndex: string };

const STALL_TIMEOUT_MS = 10 * 60_000;
const POLL_INTERVAL_MS = 1000;
const VERIFY_ATTEMPTS = 5;

/**
 * Zero-downtime rebuild of one table's index: a new versioned index from the current template,
 * live sync writing to it beside the alias from the moment the rebuild is recorded, a backfill
 * from Postgres, a count check, then one atomic alias swap. Searches use the old index until the
 * swap and the complete new one after it; the old index is kept for rollback.
 *
 * Why this is complete: the rebuild is recorded (queue.index_rebuilds) before the backfill
 * enqueues any row, and every sync batch reads that record after it claims its jobs. The backfill
 * gives every row a job that runs after the record: either a new job, or a waiting job it joins,
 * which is locked until the enqueue commits and so is claimed after it. Every such job writes both
 * indices, and any later write to a row makes a later job that does too.
 *
 * Interrupted or failed at any step, the rebuild stays recorded (live writes keep reaching both
 * indices) and running it again resumes it; `abortRebuild` drops it.
 */
export async function rebuildIndex(deps: RebuildDeps, shape: plans.TableShape, options: RebuildOptions): Promise<RebuildResult> {
  const { alias } = options;
  return withRebuildLock(deps.pool, alias, async () => {
    const { search, log } = deps;
    const table = shape.table;
    await search.indices.putIndexTemplate(indexTemplate({ alias, mappings: table.mappings }));
    const layout = await readLayout(search, alias);
    const previous = currentIndices(layout, alias, options.replaceIndex);

    const recorded = await readRebuild(deps.pool, alias);
    if (recorded && layout.kind === 'alias' && layout.indices.length === 1 && layout.indices[0] === recorded.new_index) {
      // Swapped before, but stopped before the record was cleared.
      await deps.pool.query({ ...plans.clearRebuild, values: [alias] });
      log.info({ alias, index: recorded.new_index }, 'rebuild was already swapped; cleared its record');
      return { status: 'swapped', table: table.table, alias, newIndex: recorded.new_index, previous: [], removedIndex: null, rows: 0, documents: 0, resumed: true };
    }
    const newIndex = recorded?.new_index ?? (await nextIndexName(search, alias, previous));
    if (!(await search.indices.exists({ index: newIndex }))) {
      // Created from the template (index_patterns `<alias>_v*`), so it has the current mappings.
      await search.indices.create({ index: newIndex });
    }
    if (!recorded) await deps.pool.query({ ...plans.recordRebuild, values: [alias, table.table, newIndex] });
    log.info({ alias, newIndex, previous, resumed: Boolean(recorded) }, recorded ? 'resuming rebuild' : 'rebuild started: live sync writes to both indices');

    const backfill = await enqueueTable(deps, shape, { batchSize: options.batchSize, bump: false });
    if (backfill.interrupted) return { status: 'interrupted', table: table.table, alias, newIndex };
    const backfilledAt = await databaseNow(deps.pool);
    if (!(await waitForJobs(deps, table.queue, backfilledAt, newIndex))) return { status: 'interrupted', table: table.table, alias, newIndex };

    const documents = await verifyCounts(deps, shape, newIndex);
    await swapAlias(search, alias, newIndex, layout);
    await deps.pool.query({ ...plans.clearRebuild, values: [alias] });
    log.info({ alias, newIndex, previous, documents }, 'rebuild swapped: the alias points at the new index');
    return {
      status: 'swapped',
      table: table.table,
      alias,
      newIndex,
      previous,
      removedIndex: layout.kind === 'index' ? alias : null,
      rows: backfill.rows,
      documents,
      resumed: Boolean(recorded),
    };
  });
}

/** Drops a rebuild in progress: live sync stops writing to its index, which is deleted. */
export async function abortRebuild(deps: { pool: Pool; search: SearchClient; log: Logger }, alias: string): Promise<{ deletedIndex: string | null }> {
  return withRebuildLock(deps.pool, alias, async () => {
    const recorded = await readRebuild(deps.pool, alias);
    if (!recorded) throw new ToolError(`no rebuild of ${alias} is in progress: nothing to abort`);
    // The record goes first: a batch that read it before still writes the index, fails on its
    // absence and is retried, writing only the alias then.
    await deps.pool.query({ ...plans.clearRebuild, values: [alias] });
    const layout = await readLayout(deps.search, alias);
    if (layout.kind === 'alias' && layout.indices.includes(recorded.new_index)) {
      deps.log.warn({ alias, index: recorded.new_index }, 'the alias already points at the rebuilt index; kept it');
      return { deletedIndex: null };
    }
    await deps.search.indices.delete({ index: recorded.new_index, ignore_unavailable: true });
    deps.log.info({ alias, index: recorded.new_index }, 'rebuild aborted and its index deleted');
    return { deletedIndex: recorded.new_index };
  });
}

/** The rollback of a swap, as one request an operator can send (the old index was kept for it). */
export function rollbackRequest(alias: string, previous: string[], newIndex: string): Record<string, unknown> {
  return {
    actions: [...previous.map((index) => ({ add: { index, alias } })), { remove: { index: newIndex, alias } }],
  };
}

async function withRebuildLock<T>(pool: Pool, alias: string, fn: () => Promise<T>): Promise<T> {
  const client: PoolClient = await pool.connect();
  const key = `queue-service.rebuild:${alias}`;
  try {
    const { rows } = await client.query<{ locked: boolean }>(plans.tryLock, [key]);
    if (!rows[0]?.locked) throw new ToolError(`another reindex --rebuild of ${alias} is running; wait for it to finish`);
    try {
      return await fn();
    } finally {
      await client.query(plans.unlock, [key]);
    }
  } finally {
    client.release();
  }
}

function currentIndices(layout: IndexLayout, alias: string, replaceIndex: boolean): string[] {
  if (layout.kind === 'missing') {
    throw new ToolError(`the alias ${alias} does not exist yet; start the service once (it creates ${versionedIndex(alias, 1)} and the alias), then rebuild`);
  }
  if (layout.kind === 'index') {
    if (!replaceIndex) {
      throw new ToolError(
        `${alias} is a concrete index, not an alias (the layout of older sync code). A rebuild can move it to an alias, ` +
          `but the swap must delete that index in the same request (remove_index), so there is no old index to roll back to. ` +
          'Nothing was changed; run reindex --rebuild --replace-index to go ahead.',
      );
    }
    return [];
  }
  if (layout.indices.length !== 1) {
    throw new ToolError(`the alias ${alias} points at ${layout.indices.length} indices (${layout.indices.join(', ')}); point it at one before rebuilding`);
  }
  return layout.indices;
}

/** The version after the highest in use, skipping any index left from an earlier rebuild. */
async function nextIndexName(search: SearchClient, alias: string, previous: string[]): Promise<string> {
  const versions = previous.map((name) => Number(/_v(\d+)$/.exec(name)?.[1] ?? 0));
  let version = Math.max(0, ...versions) + 1;
  while (await search.indices.exists({ index: versionedIndex(alias, version) })) version++;
  return versionedIndex(alias, version);
}

async function readRebuild(pool: Pool, alias: string): Promise<{ new_index: string } | undefined> {
  const { rows } = await pool.query<{ new_index: string }>({ ...plans.readRebuild, values: [alias] });
  return rows[0];
}

/**
 * Waits until every job of the queue created by `until` has settled: then every row the backfill
 * enqueued is in the new index (or dead-lettered, which the count check catches). Returns false
 * when interrupted.
 */
async function waitForJobs(deps: RebuildDeps, queue: string, until: Date, newIndex: string): Promise<boolean> {
  const { pool, progress, signal } = deps;
  const stallTimeoutMs = deps.stallTimeoutMs ?? STALL_TIMEOUT_MS;
  const pollIntervalMs = deps.pollIntervalMs ?? POLL_INTERVAL_MS;
  const unsettled = async () => (await pool.query<{ n: number }>({ ...plans.unsettledJobs, values: [queue, until] })).rows[0]?.n ?? 0;
  let remaining = await unsettled();
  const total = remaining;
  progress.start(`sync into ${newIndex}`, total);
  let lastChange = performance.now();
  while (remaining > 0) {
    if (signal?.aborted) return false;
    if (performance.now() - lastChange > stallTimeoutMs) {
      throw new ToolError(
        `no job of ${queue} settled for ${Math.round(stallTimeoutMs / 1000)} s with ${remaining} still waiting: is queue-service running? ` +
          `The rebuild stays in progress (live writes reach both indices); run reindex --rebuild again to resume, or with --abort to drop it.`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
    const now = await unsettled();
    if (now < remaining) lastChange = performance.now();
    remaining = now;
    progress.update(total - remaining);
  }
  progress.finish({ jobs: total });
  return true;
}

/**
 * The new index must hold one document per row of the document view. Live writes move both
 * counts while they are read, each by at most one per job of the table that was waiting or
 * settled in the meantime, so the counts must agree to within that number: with no writes,
 * exactly. A dead-lettered document shows up here, and stops the swap.
 */
async function verifyCounts(deps: RebuildDeps, shape: plans.TableShape, newIndex: string): Promise<number> {
  const { pool, search, log } = deps;
  let last = { rows: 0, documents: 0, inMotion: 0 };
  for (let attempt = 1; attempt <= VERIFY_ATTEMPTS; attempt++) {
    const since = await databaseNow(pool);
    const rows = (await pool.query<{ n: number }>(plans.countDocuments(shape))).rows[0]?.n ?? 0;
    await search.indices.refresh({ index: newIndex });
    const documents = (await search.count({ index: newIndex })).count;
    const inMotion = (await pool.query<{ n: number }>({ ...plans.jobsInMotion, values: [shape.table.queue, since] })).rows[0]?.n ?? 0;
    last = { rows, documents, inMotion };
    if (Math.abs(rows - documents) <= inMotion) {
      log.info({ index: newIndex, rows, documents, inMotion }, 'rebuild counts verified');
      return documents;
    }
    await new Promise((resolve) => setTimeout(resolve, deps.pollIntervalMs ?? POLL_INTERVAL_MS));
  }
  throw new ToolError(
    `${newIndex} holds ${last.documents} documents but ${shape.table.documentView} has ${last.rows} rows ` +
      `(${last.inMotion} jobs in flight could explain at most ${last.inMotion}); see queue.dead_letters for documents Elasticsearch refused. ` +
      `The alias was not swapped and the rebuild stays in progress: fix the cause and run reindex --rebuild again, or with --abort to drop it.`,
  );
}

/** One _aliases request: Elasticsearch applies all of its actions or none. */
async function swapAlias(search: SearchClient, alias: string, newIndex: string, layout: IndexLayout): Promise<void> {
  const removals = layout.kind === 'index' ? [{ remove_index: { index: alias } }] : layout.kind === 'alias' ? layout.indices.map((index) => ({ remove: { index, alias } })) : [];
  try {
    await search.indices.updateAliases({ actions: [{ add: { index: newIndex, alias } }, ...removals] });
  } catch (err) {
    throw new ToolError(`the alias swap was refused (${describeSearchError(err)}); the alias is unchanged and the rebuild stays in progress: run reindex --rebuild again`);
  }
}
