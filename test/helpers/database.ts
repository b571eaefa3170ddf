import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import type { Test } from 'tap';
import { readEnv, type Env } from '../../src/config/env.ts';
import { createLogger } from '../../src/config/logger.ts';
import { seedFile } from '../../src/config/paths.ts';
import { migrate } from '../../src/db/migrate.ts';

/** Where tests find Postgres: any database the test role can connect to and create databases from. */
export const adminUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function databaseUrl(name: string, admin = adminUrl): string {
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>, admin = adminUrl): Promise<T> {
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The Supabase roles, created when absent (roles are cluster-wide, so files race to create them). */
export async function ensureSupabaseRoles(admin = adminUrl): Promise<void> {
  await withAdmin(async (client) => {
    for (const role of ['anon', 'authenticated', 'service_role', 'queue_monitor']) {
      await client.query(`DO $$ BEGIN CREATE ROLE ${role} NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`);
    }
  }, admin);
}

export interface TestDatabase {
  name: string;
  url: string;
  env: Env;
  pool: pg.Pool;
  query: <R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<R[]>;
}

export interface TestDatabaseOptions {
  seed?: boolean;
  migrate?: boolean;
  env?: Record<string, string>;
  /** Another server's admin URL (a private server of the test's own); the shared one by default. */
  server?: string;
}

export function testEnv(url: string, extra: Record<string, string> = {}): Env {
  return readEnv({ DATABASE_URL: url, LOG_LEVEL: 'silent', ...extra });
}

/** A database of its own for one test file (or test), dropped when the test ends. */
export async function createTestDatabase(t: Test, options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const { seed = true, migrate: runMigrate = true, server = adminUrl } = options;
  const name = `qs_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  await ensureSupabaseRoles(server);
  await withAdmin((c) => c.query(`CREATE DATABASE ${name}`), server);
  const url = databaseUrl(name, server);
  const env = testEnv(url, options.env);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', () => {});
  t.teardown(async () => {
    await pool.end();
    await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`), server).catch(() => {});
  });
  if (seed) await pool.query(await readFile(seedFile, 'utf8'));
  if (runMigrate) await migrate(url, env, createLogger('silent'));
  const query = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> =>
    (await pool.query<R>(text, values)).rows;
  return { name, url, env, pool, query };
}

export async function connect(url: string, role?: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  if (role) await client.query(`SET ROLE ${role}`);
  return client;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` returns a truthy value or the timeout passes. */
export async function eventually<T>(check: () => Promise<T>, { timeoutMs = 10_000, intervalMs = 50 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}
