import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { packageRoot } from '../src/config/paths.ts';
import { createLogger } from '../src/config/logger.ts';
import { migrate, readMigrations } from '../src/db/migrate.ts';
import { readEnv } from '../src/config/env.ts';
import { queueConfigs } from '../src/config/queues.ts';
import { createTestDatabase } from './helpers/database.ts';

const cli = join(packageRoot, 'src/cli/main.ts');

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, LOG_LEVEL: 'silent', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('a fresh database gets pg-boss 46, the queues, every migration and the triggers', async (t) => {
  const db = await createTestDatabase(t);
  const [version] = await db.query('SELECT version FROM pgboss.version');
  t.equal(version?.version, 46);
  const queues = await db.query('SELECT name, policy, dead_letter FROM pgboss.queue ORDER BY name');
  t.same(queues, [
    { name: 'email', policy: 'standard', dead_letter: 'email.dead' },
    { name: 'email.dead', policy: 'standard', dead_letter: null },
    { name: 'export', policy: 'standard', dead_letter: 'export.dead' },
    { name: 'export.dead', policy: 'standard', dead_letter: null },
    { name: 'external-api', policy: 'standard', dead_letter: 'external-api.dead' },
    { name: 'external-api.dead', policy: 'standard', dead_letter: null },
    { name: 'image-cleanup', policy: 'standard', dead_letter: 'image-cleanup.dead' },
    { name: 'image-cleanup.dead', policy: 'standard', dead_letter: null },
    { name: 'maintenance.reconcile', policy: 'stately', dead_letter: null },
    { name: 'search-sync.inventory_items', policy: 'stately', dead_letter: 'search-sync.inventory_items.dead' },
    { name: 'search-sync.inventory_items.dead', policy: 'standard', dead_letter: null },
    { name: 'search-sync.listings', policy: 'stately', dead_letter: 'search-sync.listings.dead' },
    { name: 'search-sync.listings.dead', policy: 'standard', dead_letter: null },
  ]);
  const registered = await db.query<{ name: string }>('SELECT name FROM queue.task_queues ORDER BY name');
  t.same(registered.map((r) => r.name), ['email', 'export', 'external-api', 'image-cleanup'], 'every task queue has its payload schema registered');
  const ledger = await db.query<{ name: string }>('SELECT name FROM queue.migrations ORDER BY name');
  t.same(ledger.map((r) => r.name), (await readMigrations()).map((m) => m.name));
  const triggers = await db.query(
    `SELECT event_object_table AS tbl, string_agg(event_manipulation, ',' ORDER BY event_manipulation) AS events
     FROM information_schema.triggers WHERE trigger_name LIKE 'queue_sync_%' GROUP BY 1 ORDER BY 1`,
  );
  t.same(triggers, [
    { tbl: 'inventory_items', events: 'DELETE,INSERT,UPDATE' },
    { tbl: 'listings', events: 'DELETE,INSERT,UPDATE' },
  ]);
});

t.test('queue settings come from the typed config', async (t) => {
  const db = await createTestDatabase(t, { env: { SYNC_RETRY_LIMIT: '5', SYNC_EXPIRE_SECONDS: '90' } });
  const [row] = await db.query(`SELECT retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds FROM pgboss.queue WHERE name = 'search-sync.listings'`);
  t.same(row, { retry_limit: 5, retry_delay: 2, retry_backoff: true, retry_delay_max: 300, expire_seconds: 90 });
});

t.test('a second migrate changes nothing', async (t) => {
  const db = await createTestDatabase(t);
  const snapshot = () =>
    db.query(`SELECT (SELECT json_agg(q ORDER BY name) FROM pgboss.queue q) AS queues,
                     (SELECT json_agg(m ORDER BY name) FROM queue.migrations m) AS ledger,
                     (SELECT json_agg(p.prosrc ORDER BY p.proname) FROM pg_proc p WHERE p.pronamespace = 'queue'::regnamespace) AS functions`);
  const before = await snapshot();
  const result = await migrate(db.url, db.env, createLogger('silent'));
  t.same(result, { applied: [], queuesCreated: [], queuesUpdated: [], heldChangesReleased: 0 });
  t.same(await snapshot(), before);
});

t.test('a changed queue setting is applied on the next migrate', async (t) => {
  const db = await createTestDatabase(t);
  const result = await migrate(db.url, { ...db.env, syncRetryLimit: 3, syncRetryDelayMaxSeconds: 60 }, createLogger('silent'));
  t.same(result.queuesUpdated, ['search-sync.listings', 'search-sync.inventory_items']);
  const [row] = await db.query(`SELECT retry_limit, retry_delay_max FROM pgboss.queue WHERE name = 'search-sync.listings'`);
  t.same(row, { retry_limit: 3, retry_delay_max: 60 });
});

t.test('two migrate processes started at the same moment both exit 0', async (t) => {
  const db = await createTestDatabase(t, { migrate: false });
  const runs = await Promise.all([runCli(['migrate'], { DATABASE_URL: db.url }), runCli(['migrate'], { DATABASE_URL: db.url })]);
  t.same(runs.map((r) => r.code), [0, 0], runs.map((r) => r.stderr).join('\n'));
  const [count] = await db.query(`SELECT count(*)::int AS n FROM pgboss.queue`);
  t.equal(count?.n, queueConfigs(readEnv({})).length);
});

t.test('a missing app table fails with its name and the sample schema, without a stack trace', async (t) => {
  const db = await createTestDatabase(t, { migrate: false });
  await db.query('DROP TABLE inventory_items');
  const run = await runCli(['migrate'], { DATABASE_URL: db.url });
  t.equal(run.code, 1);
  t.match(run.stderr, /table public\.inventory_items is missing/);
  t.match(run.stderr, /supabase\/seed\.sql/);
  t.notMatch(run.stderr, /\n\s+at /, 'no stack trace');
  const [installed] = await db.query(`SELECT to_regclass('pgboss.job') AS job`);
  t.equal(installed?.job, null, 'nothing was installed');
});

t.test('a pgboss schema newer than the pinned one stops migrate with the reason', async (t) => {
  const db = await createTestDatabase(t);
  await db.query('UPDATE pgboss.version SET version = 47');
  const run = await runCli(['migrate'], { DATABASE_URL: db.url });
  t.equal(run.code, 1);
  t.match(run.stderr, /pgboss schema is at version 47, newer than version 46/);
  t.notMatch(run.stderr, /\n\s+at /);
});

t.test('a migration edited after it was applied is refused', async (t) => {
  const db = await createTestDatabase(t);
  await db.query(`UPDATE queue.migrations SET checksum = 'edited' WHERE name = '001_queue_schema.sql'`);
  const run = await runCli(['migrate'], { DATABASE_URL: db.url });
  t.equal(run.code, 1);
  t.match(run.stderr, /migration 001_queue_schema\.sql was changed after it was applied/);
});

t.test('migrate without DATABASE_URL says what to set', async (t) => {
  const run = await runCli(['migrate'], { DATABASE_URL: '' });
  t.equal(run.code, 1);
  t.match(run.stderr, /DATABASE_URL must be set for migrate/);
});
