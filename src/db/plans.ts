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

export const attachSync = 'SELECT queue.attach_sync($1::regclass)';
export const releaseHeldChanges = 'SELECT queue.release_held_changes() AS released';

export const queueRow = statement('queue-row', `
  SELECT name, policy, partition, notify, retry_limit, retry_delay, retry_backoff, retry_delay_max,
         expire_seconds, retention_seconds, deletion_seconds, dead_letter
  FROM pgboss.queue WHERE name = $1
`);
