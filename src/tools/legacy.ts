import { SYNC_TABLES, type SyncTable } from '../config/queues.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import { keyValidator, type KeyValidator } from '../sync/job-data.ts';
import { ToolError } from './errors.ts';
import * as plans from './plans.ts';
import { tableShape } from './tables.ts';

/** The columns of the legacy design; only REQUIRED ones are read, extra columns are ignored. */
export const LEGACY_COLUMNS = ['id', 'table_name', 'operation', 'record_id', 'change_data', 'status', 'retry_count', 'error_message', 'created_at', 'processed_at'];
const REQUIRED_COLUMNS = ['id', 'table_name', 'record_id', 'status'];
/** Rows the old processor had not finished: these become jobs. */
export const MOVED_STATUSES = ['pending', 'processing', 'failed'];
const BATCH_SIZE = 5000;
const SAMPLE_SIZE = 5;

export interface StatusCount {
  table: string;
  status: string;
  rows: number;
}

export interface LeftBehind extends StatusCount {
  reason: string;
  /** A few record_ids, for the invalid ones. */
  sample: string[];
}

export interface LegacyTrigger {
  table: string;
  trigger: string;
}

export interface LegacyReport {
  dryRun: boolean;
  /** Rows moved (or, in a dry run, that would be), per table and status. */
  moved: StatusCount[];
  /** Jobs created; the other moved rows joined a job already waiting for their row. Zero in a dry run. */
  jobsCreated: number;
  /** Unfinished rows left as they are, with why: not a synced table, or a record_id that is no key. */
  untouched: LeftBehind[];
  /** Legacy triggers dropped (or that would be). */
  triggers: LegacyTrigger[];
  /** Rows that stay as the archive: completed, migrated before, or any other status. */
  archived: StatusCount[];
  /** Columns of the legacy design this table does not have (none of them needed). */
  absentColumns: string[];
}

interface Target {
  table: SyncTable;
  validate: KeyValidator;
}

/**
 * Moves the unfinished rows of elasticsearch_sync_queue into the search-sync queues and drops the
 * legacy triggers on the synced tables, in one transaction: on any failure nothing has changed.
 * Each row becomes a job for its row through queue.resync (no version bump: the job reads the row
 * as it is now), coalesced like trigger jobs, and is marked `migrated`; the table stays as the
 * archive. The rows are moved, then the triggers dropped (which waits for app writes in flight on
 * those tables and holds new ones until commit), then the rows those writes added are moved too,
 * so app writes wait only for that last step.
 *
 * A dry run reads the same rows and changes nothing.
 */
export async function migrateLegacy(pool: Pool, options: { dryRun: boolean }): Promise<LegacyReport> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    try {
      const report = await migrateInTransaction(client, pool, options.dryRun);
      await client.query(options.dryRun ? 'ROLLBACK' : 'COMMIT');
      return report;
    } catch (err) {
      await client.query('ROLLBACK');
      throw explain(err);
    }
  } finally {
    client.release();
  }
}

async function migrateInTransaction(client: PoolClient, pool: Pool, dryRun: boolean): Promise<LegacyReport> {
  const columns = await legacyColumns(client);
  const missing = REQUIRED_COLUMNS.filter((c) => !columns.has(c));
  if (missing.length > 0) {
    throw new ToolError(
      `${plans.LEGACY_TABLE} has no column ${missing.join(', ')}; migrate-legacy reads ${REQUIRED_COLUMNS.join(', ')} ` +
        `(found: ${[...columns.keys()].join(', ')}). Nothing was changed.`,
    );
  }
  if (!(await client.query<{ installed: boolean }>(plans.enqueueInstalled)).rows[0]?.installed) {
    throw new ToolError('the queue schema is not installed in this database; run migrate first, then migrate-legacy');
  }
  const idType = columns.get('id')!;
  const targets = new Map<string, Target>();
  for (const table of SYNC_TABLES) {
    const shape = await tableShape(pool, table);
    targets.set(table.table, { table, validate: keyValidator(shape.keyType) ?? (() => null) });
  }
  const archived = (await client.query<{ table_name: string; status: string; rows: number }>(plans.legacyStatusCounts)).rows
    .filter((r) => !MOVED_STATUSES.includes(r.status))
    .map((r) => ({ table: r.table_name, status: r.status, rows: r.rows }));

  const mover = new Mover(client, targets, idType, columns.has('processed_at'), dryRun);
  if (!dryRun) await mover.pass(false);
  const triggers = await retireTriggers(client, dryRun);
  await mover.pass(true);
  return {
    dryRun,
    moved: mover.moved(),
    jobsCreated: mover.jobsCreated,
    untouched: mover.untouched(),
    triggers,
    archived,
    absentColumns: LEGACY_COLUMNS.filter((c) => !columns.has(c)),
  };
}

async function legacyColumns(client: PoolClient): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; type: string }>(plans.legacyColumns, [plans.LEGACY_TABLE]);
  if (rows.length === 0) throw new ToolError(`there is no ${plans.LEGACY_TABLE} in this database: nothing to migrate`);
  return new Map(rows.map((r) => [r.name, r.type]));
}

/** Lists (dry run) or saves and drops the legacy triggers on the synced tables. */
async function retireTriggers(client: PoolClient, dryRun: boolean): Promise<LegacyTrigger[]> {
  const synced = SYNC_TABLES.map((t) => `${t.schema}.${t.table}`);
  const { rows } = await client.query<{ table_name: string; trigger_name: string; definition: string }>(plans.legacyTriggers, [synced]);
  if (!dryRun && rows.length > 0) {
    await client.query(plans.lockTimeout);
    for (const row of rows) {
      await client.query(plans.saveTrigger, [row.table_name, row.trigger_name, row.definition]);
      await client.query(plans.dropTrigger(row.table_name, row.trigger_name));
    }
  }
  return rows.map((r) => ({ table: r.table_name, trigger: r.trigger_name }));
}

interface LegacyRow {
  id: string;
  table_name: string;
  record_id: string;
  status: string;
}

/** Walks the unfinished rows in id order, a batch at a time, moving the ones that can move. */
class Mover {
  jobsCreated = 0;
  readonly #client: PoolClient;
  readonly #targets: Map<string, Target>;
  readonly #idType: string;
  readonly #hasProcessedAt: boolean;
  readonly #dryRun: boolean;
  readonly #moved = new Map<string, StatusCount>();
  readonly #untouched = new Map<string, LeftBehind>();

  constructor(client: PoolClient, targets: Map<string, Target>, idType: string, hasProcessedAt: boolean, dryRun: boolean) {
    this.#client = client;
    this.#targets = targets;
    this.#idType = idType;
    this.#hasProcessedAt = hasProcessedAt;
    this.#dryRun = dryRun;
  }

  /** One walk from the start; the last one counts what stays behind (earlier ones would count it twice). */
  async pass(countUntouched: boolean): Promise<void> {
    const lock = !this.#dryRun;
    const first = plans.legacyRows(this.#idType, { first: true, lock });
    const next = plans.legacyRows(this.#idType, { first: false, lock });
    let after: string | null = null;
    for (;;) {
      const values: unknown[] = after === null ? [MOVED_STATUSES, BATCH_SIZE] : [MOVED_STATUSES, BATCH_SIZE, after];
      const rows: LegacyRow[] = (await this.#client.query<LegacyRow>(after === null ? first : next, values)).rows;
      if (rows.length === 0) return;
      await this.#batch(rows, countUntouched);
      after = rows.at(-1)!.id;
      if (rows.length < BATCH_SIZE) return;
    }
  }

  async #batch(rows: LegacyRow[], countUntouched: boolean): Promise<void> {
    const movable = new Map<string, { ids: string[]; keys: Set<string> }>();
    for (const row of rows) {
      const target = this.#targets.get(row.table_name);
      const problem = target ? target.validate(row.record_id) : 'not a synced table';
      if (problem) {
        if (countUntouched) this.#leave(row, problem);
        continue;
      }
      const group = movable.get(row.table_name) ?? { ids: [], keys: new Set<string>() };
      group.ids.push(row.id);
      group.keys.add(row.record_id);
      movable.set(row.table_name, group);
      bump(this.#moved, `${row.table_name}\u0000${row.status}`, { table: row.table_name, status: row.status, rows: 0 });
    }
    if (this.#dryRun) return;
    for (const [tableName, group] of movable) {
      const table = this.#targets.get(tableName)!.table;
      // Distinct keys: one statement may not propose two jobs for one row.
      const { rows: created } = await this.#client.query<{ created: number }>(plans.resync.text, [`${table.schema}.${table.table}`, [...group.keys], false]);
      this.jobsCreated += created[0]?.created ?? 0;
      await this.#client.query(plans.markMigrated(this.#idType, this.#hasProcessedAt), [group.ids]);
    }
  }

  #leave(row: LegacyRow, problem: string): void {
    const reason = problem === 'not a synced table' ? problem : 'record_id is not a key of the table';
    const entry = bump(this.#untouched, `${row.table_name}\u0000${row.status}\u0000${reason}`, { table: row.table_name, status: row.status, rows: 0, reason, sample: [] });
    if (reason !== 'not a synced table' && entry.sample.length < SAMPLE_SIZE) entry.sample.push(row.record_id);
  }

  moved(): StatusCount[] {
    return sorted([...this.#moved.values()]);
  }

  untouched(): LeftBehind[] {
    return sorted([...this.#untouched.values()]);
  }
}

function bump<T extends StatusCount>(map: Map<string, T>, key: string, initial: T): T {
  const entry = map.get(key) ?? initial;
  entry.rows++;
  map.set(key, entry);
  return entry;
}

const STATUS_ORDER = ['pending', 'processing', 'failed'];
function sorted<T extends StatusCount>(counts: T[]): T[] {
  return counts.sort((a, b) => a.table.localeCompare(b.table) || STATUS_ORDER.indexOf(a.status) - STATUS_ORDER.indexOf(b.status));
}

/**
 * The way back: creates the legacy triggers migrate-legacy dropped, as they were (their function
 * was never dropped). Run twice, the second run finds nothing to restore.
 */
export async function rollbackLegacy(pool: Pool): Promise<{ restored: LegacyTrigger[]; alreadyPresent: LegacyTrigger[] }> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    try {
      const { rows } = await client.query<{ table_name: string; trigger_name: string; definition: string }>(plans.savedTriggers);
      if (rows.length > 0 && !(await client.query<{ present: boolean }>(plans.legacyFunctionExists)).rows[0]?.present) {
        throw new ToolError(`the legacy trigger function ${plans.LEGACY_FUNCTION}() no longer exists; create it again (from the legacy schema), then run --rollback`);
      }
      await client.query(plans.lockTimeout);
      const restored: LegacyTrigger[] = [];
      const alreadyPresent: LegacyTrigger[] = [];
      for (const row of rows) {
        const entry = { table: row.table_name, trigger: row.trigger_name };
        const present = (await client.query<{ present: boolean }>(plans.triggerExists, [row.table_name, row.trigger_name])).rows[0]?.present;
        if (present) alreadyPresent.push(entry);
        else {
          await client.query(row.definition);
          restored.push(entry);
        }
        await client.query(plans.forgetTrigger, [row.table_name, row.trigger_name]);
      }
      await client.query('COMMIT');
      return { restored, alreadyPresent };
    } catch (err) {
      await client.query('ROLLBACK');
      throw explain(err);
    }
  } finally {
    client.release();
  }
}

/** Postgres errors an operator can act on, in their words; anything else as it came. */
function explain(err: unknown): unknown {
  const pgError = err as { code?: string; constraint?: string; table?: string };
  if (pgError.code === '23514' && pgError.table === 'elasticsearch_sync_queue') {
    return new ToolError(
      `${plans.LEGACY_TABLE} refuses the status 'migrated' (check constraint ${pgError.constraint}). Allow it, e.g. ` +
        `ALTER TABLE ${plans.LEGACY_TABLE} DROP CONSTRAINT ${pgError.constraint}, ADD CONSTRAINT ${pgError.constraint} ` +
        `CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'migrated')); then run migrate-legacy again. Nothing was changed.`,
    );
  }
  if (pgError.code === '55P03') {
    return new ToolError('could not lock a synced table within 10 s to change its triggers: a long transaction holds it. Nothing was changed; run it again.');
  }
  return err;
}
