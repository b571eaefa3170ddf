import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import { migrationsDir } from '../config/paths.ts';
import { queueConfigs, SYNC_TABLES, type QueueConfig, type TaskQueue } from '../config/queues.ts';
import * as plans from './plans.ts';

/** The pgboss schema version the triggers in migrations/ write (pg-boss 12.38.0). */
export const PGBOSS_SCHEMA_VERSION = 46;

const LOCK_KEY = 'queue-service.migrate';

/** A migration failure with a message meant for the operator, printed without a stack. */
export class MigrateError extends Error {
  override name = 'MigrateError';
}

export interface MigrateResult {
  applied: string[];
  queuesCreated: string[];
  queuesUpdated: string[];
  heldChangesReleased: number;
}

/**
 * Installs or upgrades everything the service needs, in an order where each step can rely on the
 * one before: app tables present, pg-boss schema at the pinned version, queues, our migrations,
 * triggers. Serialised by an advisory lock, so containers starting together take turns and the
 * later ones find nothing to do.
 */
export interface MigrateOptions {
  /** The task queues to create; TASK_QUEUES by default (tests add their own). */
  tasks?: readonly TaskQueue[];
}

export async function migrate(databaseUrl: string, env: Env, log: Logger, options: MigrateOptions = {}): Promise<MigrateResult> {
  const configs = queueConfigs(env, options.tasks);
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'queue-service migrate' });
  await client.connect();
  try {
    await client.query(plans.migrateLock, [LOCK_KEY]);
    try {
      await assertAppTables(client);
      await installPgBoss(client, databaseUrl, log);
      const queues = await ensureQueues(client, databaseUrl, configs);
      const applied = await applyMigrations(client, log);
      for (const table of SYNC_TABLES) {
        await client.query(plans.attachSync, [`${table.schema}.${table.table}`]);
      }
      await registerTaskQueues(client, configs);
      const { rows } = await client.query<{ released: number }>(plans.releaseHeldChanges);
      const { rows: jobs } = await client.query<{ released: number }>(plans.releaseHeldJobs);
      const heldChangesReleased = (rows[0]?.released ?? 0) + (jobs[0]?.released ?? 0);
      if (heldChangesReleased > 0) log.warn({ heldChangesReleased }, 'enqueued changes held during a pgboss version mismatch');
      const result = { applied, ...queues, heldChangesReleased };
      log.info(result, 'migrate finished');
      return result;
    } finally {
      await client.query(plans.migrateUnlock, [LOCK_KEY]);
    }
  } finally {
    await client.end();
  }
}

async function assertAppTables(client: pg.Client): Promise<void> {
  const names = SYNC_TABLES.map((t) => `${t.schema}.${t.table}`);
  const { rows } = await client.query<{ name: string; present: boolean; single_key: boolean }>(plans.tableShapes, [names]);
  const missing = rows.filter((r) => !r.present).map((r) => r.name);
  if (missing.length > 0) {
    throw new MigrateError(
      `table ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing. ` +
        'The queue service syncs these app tables to Elasticsearch but does not own them: create your app schema first, ' +
        'or load the sample one with `psql "$DATABASE_URL" -f supabase/seed.sql`, then run migrate again.',
    );
  }
  const keyless = rows.filter((r) => !r.single_key).map((r) => r.name);
  if (keyless.length > 0) {
    throw new MigrateError(`table ${keyless.join(', ')} needs a single-column primary key: it is the search document's _id and the job key`);
  }
}

async function readPgBossVersion(client: pg.Client): Promise<number | null> {
  const { rows } = await client.query<{ installed: boolean }>(plans.pgbossInstalled);
  if (!rows[0]?.installed) return null;
  const version = await client.query<{ version: number }>(plans.pgbossVersion);
  return version.rows[0]?.version ?? null;
}

async function installPgBoss(client: pg.Client, databaseUrl: string, log: Logger): Promise<void> {
  const before = await readPgBossVersion(client);
  if (before !== null && before > PGBOSS_SCHEMA_VERSION) {
    throw new MigrateError(
      `the pgboss schema is at version ${before}, newer than version ${PGBOSS_SCHEMA_VERSION} that this release's triggers write. ` +
        'Another program upgraded pg-boss in this database; upgrade queue-service to a release built for that version. ' +
        'Until then the triggers hold new changes in queue.held_changes and nothing is lost.',
    );
  }
  if (before !== PGBOSS_SCHEMA_VERSION) {
    // pg-boss's own machinery: a fresh install, or its migrations from an older version.
    const boss = new PgBoss({
      connectionString: databaseUrl,
      migrate: true,
      supervise: false,
      schedule: false,
      registerInstance: false,
      max: 2,
    });
    boss.on('error', (err: Error) => log.warn({ err: err.message }, 'pg-boss error during install'));
    await boss.start();
    await boss.stop({ graceful: false });
    log.info({ from: before, to: PGBOSS_SCHEMA_VERSION }, before === null ? 'installed pg-boss schema' : 'migrated pg-boss schema');
  }
  const after = await readPgBossVersion(client);
  if (after !== PGBOSS_SCHEMA_VERSION) {
    throw new MigrateError(`the pgboss schema is at version ${after}, expected ${PGBOSS_SCHEMA_VERSION}; the triggers cannot write it safely`);
  }
}

type QueueRow = Record<string, unknown>;

/** The queue row columns each option maps to, to tell whether a queue needs updating. */
const OPTION_COLUMNS = {
  retryLimit: 'retry_limit',
  retryDelay: 'retry_delay',
  retryBackoff: 'retry_backoff',
  retryDelayMax: 'retry_delay_max',
  expireInSeconds: 'expire_seconds',
  retentionSeconds: 'retention_seconds',
  deleteAfterSeconds: 'deletion_seconds',
  deadLetter: 'dead_letter',
  notify: 'notify',
} as const;

async function ensureQueues(
  client: pg.Client,
  databaseUrl: string,
  configs: QueueConfig[],
): Promise<{ queuesCreated: string[]; queuesUpdated: string[] }> {
  const queuesCreated: string[] = [];
  const queuesUpdated: string[] = [];
  let boss: PgBoss | undefined;
  const getBoss = async (): Promise<PgBoss> => {
    boss ??= await new PgBoss({ connectionString: databaseUrl, migrate: false, supervise: false, schedule: false, registerInstance: false, max: 2 }).start();
    return boss;
  };
  try {
    for (const { name, options } of configs) {
      const { rows } = await client.query<QueueRow>(plans.queueRow, [name]);
      const row = rows[0];
      if (!row) {
        await (await getBoss()).createQueue(name, options);
        queuesCreated.push(name);
        continue;
      }
      if (row.policy !== options.policy || row.partition !== options.partition) {
        throw new MigrateError(
          `queue ${name} exists with policy ${String(row.policy)} and partition ${String(row.partition)}, but this release needs ` +
            `${options.policy} and ${options.partition}; pg-boss cannot change either in place`,
        );
      }
      const changed = Object.entries(OPTION_COLUMNS).some(
        ([option, column]) => (options[option as keyof typeof OPTION_COLUMNS] ?? null) !== row[column],
      );
      if (changed) {
        // All of them, not just the changed ones: pg-boss validates them together (a retryDelayMax
        // is refused unless retryBackoff is in the same update).
        const { policy: _policy, partition: _partition, ...settings } = options;
        await (await getBoss()).updateQueue(name, settings);
        queuesUpdated.push(name);
      }
    }
  } finally {
    await boss?.stop({ graceful: false });
  }
  return { queuesCreated, queuesUpdated };
}

/** Each task queue's payload schema (queue.send checks it) and rate limit (queue.take_permits reads it). */
async function registerTaskQueues(client: pg.Client, configs: QueueConfig[]): Promise<void> {
  for (const q of configs) {
    if (q.kind !== 'task') continue;
    await client.query(plans.registerTaskQueue, [q.name, q.description, JSON.stringify(q.dataSchema), q.rateLimit?.limit ?? null, q.rateLimit?.periodSeconds ?? null]);
  }
}

export interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

export async function readMigrations(dir = migrationsDir): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((f) => /^\d{3}_.+\.sql$/.test(f)).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(join(dir, name), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

async function applyMigrations(client: pg.Client, log: Logger): Promise<string[]> {
  await client.query(plans.createLedger);
  const { rows } = await client.query<{ name: string; checksum: string }>(plans.appliedMigrations);
  const done = new Map(rows.map((r) => [r.name, r.checksum]));
  const applied: string[] = [];
  for (const migration of await readMigrations()) {
    const checksum = done.get(migration.name);
    if (checksum !== undefined) {
      if (checksum !== migration.checksum) {
        throw new MigrateError(
          `migration ${migration.name} was changed after it was applied to this database; ` +
            'migrations are never edited once released: put the change in a new migration file',
        );
      }
      continue;
    }
    await client.query('BEGIN');
    try {
      await client.query(migration.sql);
      await client.query(plans.recordMigration, [migration.name, migration.checksum]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK');
      throw new MigrateError(`migration ${migration.name} failed: ${(err as Error).message}`);
    }
    log.info({ migration: migration.name }, 'applied migration');
    applied.push(migration.name);
  }
  return applied;
}
