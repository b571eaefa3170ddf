// The SQL of the operator tools (reindex, rebuild, reconcile, migrate-legacy), one named statement
// each. Identifiers come from the service's own config (SYNC_TABLES) or from the catalog, never
// from user input; they are quoted anyway. What other clients need too lives in SQL functions in
// migrations/ (queue.resync, queue.advance_document_version).
import pg from 'pg';
import type { SyncTable } from '../config/queues.ts';
import type { Statement } from '../db/plans.ts';

export type { Statement };

const statement = (name: string, text: string): Statement => ({ name, text });
const ident = (name: string) => pg.escapeIdentifier(name);

/** What a statement over one synced table needs to know about it. */
export interface TableShape {
  table: SyncTable;
  /** The SQL type of the primary key (uuid, bigint, text, ...), as plans.keyType reads it. */
  keyType: string;
}

const qualified = ({ table }: TableShape) => `${ident(table.schema)}.${ident(table.table)}`;
const versionTable = ({ table }: TableShape) => `queue.${ident(`${table.table}_version`)}`;
const key = ({ table }: TableShape) => ident(table.key);

// --- shared ----------------------------------------------------------------------------------

export const databaseNow = statement('tools-now', 'SELECT now() AS now');

/** Jobs of queue $1 created by $2 that have not settled (completed, failed for good, cancelled). */
export const unsettledJobs = statement(
  'tools-unsettled-jobs',
  `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state < 'completed' AND created_on <= $2`,
);

// --- reindex ---------------------------------------------------------------------------------

export const countRows = (shape: TableShape) => statement(`tools-count-rows:${shape.table.table}`, `SELECT count(*)::bigint AS n FROM ${qualified(shape)}`);

/** One keyset page of primary keys, in index order; $1 is the last key of the page before. */
export function keysAfter(shape: TableShape, first: boolean): Statement {
  const where = first ? '' : `WHERE ${key(shape)} > $2::${shape.keyType}`;
  return statement(
    `tools-keys${first ? '-first' : ''}:${shape.table.table}`,
    `SELECT ${key(shape)}::text AS key FROM ${qualified(shape)} ${where} ORDER BY ${key(shape)} LIMIT $1`,
  );
}

/** Enqueues sync jobs for keys $2 of table $1 (coalescing with waiting jobs); $3 bumps versions first. */
export const resync = statement('tools-resync', 'SELECT queue.resync($1::regclass, $2::text[], $3::boolean) AS created');

// --- rebuild ---------------------------------------------------------------------------------

/** Held on its own session for a whole rebuild, so two rebuilds of one alias cannot interleave. */
export const tryLock = 'SELECT pg_try_advisory_lock(hashtext($1)) AS locked';
export const unlock = 'SELECT pg_advisory_unlock(hashtext($1))';

export const readRebuild = statement(
  'tools-read-rebuild',
  'SELECT alias, table_name, new_index, started_at FROM queue.index_rebuilds WHERE alias = $1',
);
export const recordRebuild = statement(
  'tools-record-rebuild',
  'INSERT INTO queue.index_rebuilds (alias, table_name, new_index) VALUES ($1, $2, $3) ON CONFLICT (alias) DO NOTHING',
);
export const clearRebuild = statement('tools-clear-rebuild', 'DELETE FROM queue.index_rebuilds WHERE alias = $1');

export const countDocuments = (shape: TableShape) =>
  statement(`tools-count-documents:${shape.table.table}`, `SELECT count(*)::bigint AS n FROM ${shape.table.documentView}`);

/**
 * Jobs of queue $1 that could change the index between $2 and now: still unsettled, or settled
 * since. Every document the index gains or loses in that time is written by one of them.
 */
export const jobsInMotion = statement(
  'tools-jobs-in-motion',
  `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND (state < 'completed' OR completed_on >= $2)`,
);

// --- reconcile -------------------------------------------------------------------------------

/** One keyset page of the document view: each row's id and the version its document should have. */
export function documentVersions(shape: TableShape, first: boolean): Statement {
  const where = first ? '' : `WHERE d.${key(shape)} > $2::${shape.keyType}`;
  return statement(
    `tools-document-versions${first ? '-first' : ''}:${shape.table.table}`,
    `SELECT d.${key(shape)}::text AS id, COALESCE(v.version, 0) AS version
     FROM ${shape.table.documentView} d
     LEFT JOIN ${versionTable(shape)} v ON v.${key(shape)} = d.${key(shape)}
     ${where}
     ORDER BY d.${key(shape)} LIMIT $1`,
  );
}

/** Which of the ids $1 (valid keys) have a row in the document view. */
export const presentIds = (shape: TableShape) =>
  statement(
    `tools-present-ids:${shape.table.table}`,
    `SELECT k.id FROM unnest($1::text[]) AS k(id) JOIN ${shape.table.documentView} d ON d.${key(shape)} = k.id::${shape.keyType}`,
  );

/**
 * The current state of ids that looked drifted: whether the row is in the view, its version now,
 * and whether a sync job for it was waiting or ran since $3 (the run's start) in queue $2. Such an
 * id is in flight, not drifted: the index may simply not have caught up, or caught up after it was
 * read. Read after the index, so a write between the two reads is never mistaken for drift.
 *
 * Three lookups, each on an index pg-boss keeps: waiting jobs by key (created, retry), the few
 * active ones, and those that finished since the run began. A single "state < completed" test
 * would match none of them and scan the queue's jobs for every id.
 */
export const recheck = (shape: TableShape) =>
  statement(
    `tools-recheck:${shape.table.table}`,
    `WITH busy AS (
       SELECT j.singleton_key AS id FROM pgboss.job j WHERE j.name = $2 AND j.state < 'active' AND j.singleton_key = ANY ($1::text[])
       UNION
       SELECT j.singleton_key FROM pgboss.job j WHERE j.name = $2 AND j.state = 'active' AND j.singleton_key = ANY ($1::text[])
       UNION
       SELECT j.singleton_key FROM pgboss.job j WHERE j.name = $2 AND j.completed_on >= $3 AND j.singleton_key = ANY ($1::text[])
     )
     SELECT k.id, d.${key(shape)} IS NOT NULL AS present, COALESCE(v.version, 0) AS version,
            k.id IN (SELECT b.id FROM busy b) AS in_flight
     FROM unnest($1::text[]) AS k(id)
     LEFT JOIN ${shape.table.documentView} d ON d.${key(shape)} = k.id::${shape.keyType}
     LEFT JOIN ${versionTable(shape)} v ON v.${key(shape)} = k.id::${shape.keyType}`,
  );

export const advanceDocumentVersion = statement('tools-advance-version', 'SELECT queue.advance_document_version($1) AS reached');

export const recordReconcileRun = statement(
  'tools-record-reconcile',
  `INSERT INTO queue.reconcile_runs (
     table_name, source, repair, status, started_at, rows_checked, documents_checked,
     missing, stale, orphaned, in_flight, repaired, sample, error
   ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
);

/** Runs are kept for 90 days: enough to see a trend, small enough to never matter. */
export const pruneReconcileRuns = statement('tools-prune-reconcile', `DELETE FROM queue.reconcile_runs WHERE started_at < now() - interval '90 days'`);

// --- migrate-legacy --------------------------------------------------------------------------

export const LEGACY_TABLE = 'public.elasticsearch_sync_queue';
export const LEGACY_FUNCTION = 'add_to_elasticsearch_queue';

export const legacyColumns = `
  SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a
  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
`;

export const enqueueInstalled = `SELECT to_regprocedure('queue.enqueue_sync(text, text[])') IS NOT NULL AS installed`;

/** Rows per table and status, for the report of what stays behind. */
export const legacyStatusCounts = `
  SELECT table_name, status, count(*)::int AS rows FROM ${LEGACY_TABLE} GROUP BY 1, 2 ORDER BY 1, 2
`;

/**
 * One page of rows to move, in id order after $3. Locked when moving, so an old processor still
 * running cannot mark a row done while it is being moved.
 */
export function legacyRows(idType: string, options: { first: boolean; lock: boolean }): string {
  return `
    SELECT id::text AS id, table_name, record_id, status FROM ${LEGACY_TABLE}
    WHERE status = ANY ($1::text[]) ${options.first ? '' : `AND id > $3::${idType}`}
    ORDER BY id LIMIT $2
    ${options.lock ? 'FOR UPDATE' : ''}
  `;
}

export function markMigrated(idType: string, hasProcessedAt: boolean): string {
  return `
    UPDATE ${LEGACY_TABLE} SET status = 'migrated'${hasProcessedAt ? ', processed_at = now()' : ''}
    WHERE id = ANY ($1::${idType}[])
  `;
}

/** Triggers on the tables $1 (regclass names) that call the legacy trigger function. */
export const legacyTriggers = `
  SELECT format('%I.%I', n.nspname, c.relname) AS table_name, t.tgname AS trigger_name, pg_get_triggerdef(t.oid) AS definition
  FROM pg_trigger t
  JOIN pg_proc p ON p.oid = t.tgfoid
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE p.proname = '${LEGACY_FUNCTION}' AND NOT t.tgisinternal AND t.tgrelid = ANY ($1::regclass[])
  ORDER BY 1, 2
`;

export const dropTrigger = (tableName: string, trigger: string) => `DROP TRIGGER ${ident(trigger)} ON ${tableName}`;

export const saveTrigger = `
  INSERT INTO queue.legacy_triggers (table_name, trigger_name, definition) VALUES ($1, $2, $3)
  ON CONFLICT (table_name, trigger_name) DO UPDATE SET definition = EXCLUDED.definition, dropped_at = now()
`;
export const savedTriggers = 'SELECT table_name, trigger_name, definition FROM queue.legacy_triggers ORDER BY 1, 2';
export const forgetTrigger = 'DELETE FROM queue.legacy_triggers WHERE table_name = $1 AND trigger_name = $2';
export const triggerExists = 'SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2) AS present';
export const legacyFunctionExists = `SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = '${LEGACY_FUNCTION}') AS present`;

/** A long app transaction must not hold the migration (and every app write queued behind it). */
export const lockTimeout = `SET LOCAL lock_timeout = '10s'`;
