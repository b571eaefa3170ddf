// The SQL the service runs outside migrations/, one named statement each. Names let Postgres
// prepare a statement once per connection; behaviour that other clients need lives in SQL
// functions in migrations/ instead (queue.enqueue_sync, queue.bump_versions, ...).

export interface Statement {
  name: string;
  text: string;
}

const statement = (name: string, text: string): Statement => ({ name, text });

// --- migrate ---------------------------------------------------------------------------------

/** Held for the whole migration on its own session, so concurrent `migrate` runs take turns. */
export const migrateLock = 'SELECT pg_advisory_lock(hashtext($1))';
export const migrateUnlock = 'SELECT pg_advisory_unlock(hashtext($1))';

export const createLedger = `
  CREATE SCHEMA IF NOT EXISTS queue;
  CREATE TABLE IF NOT EXISTS queue.migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  );
  REVOKE ALL ON queue.migrations FROM PUBLIC;
`;

export const appliedMigrations = 'SELECT name, checksum FROM queue.migrations ORDER BY name';
export const recordMigration = 'INSERT INTO queue.migrations (name, checksum) VALUES ($1, $2)';

/** Which of the given tables (schema-qualified) exist and have a single-column primary key. */
export const tableShapes = `
  SELECT t.name,
         to_regclass(t.name) IS NOT NULL AS present,
         EXISTS (
           SELECT 1 FROM pg_index i
           WHERE i.indrelid = to_regclass(t.name) AND i.indisprimary AND i.indnatts = 1
         ) AS single_key
  FROM unnest($1::text[]) AS t(name)
`;

export const pgbossInstalled = "SELECT to_regclass('pgboss.version') IS NOT NULL AS installed";
export const pgbossVersion = 'SELECT version FROM pgboss.version';

export const autovacuumSetting = "SELECT current_setting('autovacuum') AS autovacuum";
/** The triggers of a synced table: its writes (queue.attach_sync), then TRUNCATE (migration 011). */
export const attachSync = 'SELECT queue.attach_sync($1::regclass), queue.attach_truncate_sync($1::regclass)';
export const releaseHeldChanges = 'SELECT queue.release_held_changes() AS released';
export const releaseHeldJobs = 'SELECT queue.release_held_jobs() AS released';
export const registerTaskQueue = 'SELECT queue.register_task_queue($1, $2, $3::jsonb, $4, $5)';

export const queueRow = statement('queue-row', `
  SELECT name, policy, partition, notify, retry_limit, retry_delay, retry_backoff, retry_delay_max,
         expire_seconds, retention_seconds, deletion_seconds, dead_letter
  FROM pgboss.queue WHERE name = $1
`);

// --- sync ------------------------------------------------------------------------------------

/** The type of a synced table's primary key, as SQL spells it (uuid, bigint, text, ...). */
export const keyType = `
  SELECT format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = $1::regclass AND i.indisprimary AND i.indnatts = 1
`;

/**
 * The current document and version of every id of a batch, in one query. An id with no row in
 * the document view comes back with a null document (delete it); its version is its tombstone's.
 * Identifiers come from the service's own config, never from job data.
 */
export function readDocuments(view: string, versionTable: string, key: string, type: string): Statement {
  return statement(
    `read-documents:${view}`,
    `SELECT k.id, COALESCE(v.version, 0) AS version, to_jsonb(d) AS source
     FROM unnest($1::text[]) AS k(id)
     LEFT JOIN ${view} d ON d.${key} = k.id::${type}
     LEFT JOIN ${versionTable} v ON v.${key} = k.id::${type}`,
  );
}

/** The new index of a rebuild in progress for alias $1 (reindex --rebuild), written beside the alias. */
export const rebuildTarget = statement('rebuild-target', 'SELECT new_index FROM queue.index_rebuilds WHERE alias = $1');

/** Keys among $2 of queue $1 with a job that has not started yet, other than the jobs $3. */
export const waitingKeys = statement(
  'waiting-keys',
  `SELECT DISTINCT singleton_key AS key FROM pgboss.job
   WHERE name = $1 AND singleton_key = ANY ($2::text[]) AND state < 'active' AND NOT (id = ANY ($3::uuid[]))`,
);

// --- embedded demo ---------------------------------------------------------------------------

export const databaseExists = 'SELECT 1 FROM pg_database WHERE datname = $1';

