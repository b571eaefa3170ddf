import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { createLogger } from '../src/config/logger.ts';
import { packageRoot } from '../src/config/paths.ts';
import { migrate } from '../src/db/migrate.ts';
import { buildSupabaseMigrations, QUEUE_SERVICE_FILE, staleSupabaseMigrations } from '../scripts/build-supabase-migration.ts';
import { queueConfigs } from '../src/config/queues.ts';
import { createTestDatabase, testEnv, type TestDatabase } from './helpers/database.ts';

t.test('the generated Supabase migrations are up to date with seed.sql, pg-boss, the queue config and migrations/', async (t) => {
  t.same(await staleSupabaseMigrations(), [], 'run `npm run supabase:migration` and commit the result');
});

t.test('the check command passes on the committed files and names a stale one', async (t) => {
  const script = join(packageRoot, 'scripts/build-supabase-migration.ts');
  const fresh = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
  t.equal(fresh.status, 0, fresh.stderr);

  const dir = t.testdir();
  t.equal(spawnSync(process.execPath, [script, '--dir', dir], { encoding: 'utf8' }).status, 0);
  await writeFile(join(dir, QUEUE_SERVICE_FILE), (await readFile(join(dir, QUEUE_SERVICE_FILE), 'utf8')).replace('attach_sync', 'attach_sync_edited'));
  const stale = spawnSync(process.execPath, [script, '--check', '--dir', dir], { encoding: 'utf8' });
  t.equal(stale.status, 1);
  t.match(stale.stderr, `: ${QUEUE_SERVICE_FILE}\nrun \`npm run supabase:migration\``);
});

/** Everything `migrate` leaves behind that a user or the service could notice. */
async function snapshot(db: TestDatabase) {
  const [row] = await db.query(`
    SELECT
      (SELECT json_agg(to_jsonb(q) - '{created_on,updated_on}'::text[] ORDER BY name) FROM pgboss.queue q) AS queues,
      (SELECT json_agg(json_build_object('name', name, 'checksum', checksum) ORDER BY name) FROM queue.migrations) AS ledger,
      (SELECT version FROM pgboss.version) AS pgboss_version,
      (SELECT json_agg(json_build_object('fn', p.oid::regprocedure::text, 'src', p.prosrc, 'definer', p.prosecdef,
                                         'config', p.proconfig, 'acl', p.proacl::text[]) ORDER BY p.oid::regprocedure::text)
         FROM pg_proc p WHERE p.pronamespace IN ('queue'::regnamespace, 'pgboss'::regnamespace)) AS functions,
      (SELECT json_agg(json_build_object('trigger', tgname, 'table', tgrelid::regclass::text, 'fn', tgfoid::regprocedure::text, 'type', tgtype)
                       ORDER BY tgrelid::regclass::text, tgname)
         FROM pg_trigger WHERE NOT tgisinternal) AS triggers,
      (SELECT json_agg(json_build_object('name', c.oid::regclass::text, 'kind', c.relkind, 'acl', c.relacl::text[]) ORDER BY c.oid::regclass::text)
         FROM pg_class c WHERE c.relnamespace IN ('queue'::regnamespace, 'pgboss'::regnamespace)) AS relations,
      (SELECT json_agg(indexdef ORDER BY indexdef) FROM pg_indexes WHERE schemaname IN ('queue', 'pgboss')) AS indexes,
      (SELECT json_agg(json_build_object('schema', nspname, 'acl', nspacl::text[]) ORDER BY nspname)
         FROM pg_namespace WHERE nspname IN ('queue', 'pgboss')) AS schemas
  `);
  return row!;
}

/** Applies a migration file as the Supabase CLI does: the whole file in one transaction. */
async function applyAsSupabaseCli(db: TestDatabase, sql: string): Promise<void> {
  await db.pool.query(sql);
}

t.test('a fresh database given the two generated files matches one given migrate, and a later migrate does nothing', async (t) => {
  const [sampleSchema, queueService] = await buildSupabaseMigrations();
  const bySupabase = await createTestDatabase(t, { seed: false, migrate: false });
  await applyAsSupabaseCli(bySupabase, sampleSchema!.sql);
  await applyAsSupabaseCli(bySupabase, queueService!.sql);

  const byMigrate = await createTestDatabase(t, { seed: false, migrate: false });
  await applyAsSupabaseCli(byMigrate, sampleSchema!.sql);
  await migrate(byMigrate.url, byMigrate.env, createLogger('silent'));

  const expected = await snapshot(byMigrate);
  const actual = await snapshot(bySupabase);
  t.ok((expected.functions as unknown[]).length > 10 && (expected.queues as unknown[]).length === queueConfigs(testEnv(byMigrate.url)).length, 'the snapshot holds what migrate installed');
  for (const part of Object.keys(expected)) t.same(actual[part], expected[part], part);

  const result = await migrate(bySupabase.url, bySupabase.env, createLogger('silent'));
  t.same(result, { applied: [], queuesCreated: [], queuesUpdated: [], heldChangesReleased: 0 }, 'migrate finds everything applied');
  t.same(await snapshot(bySupabase), actual, 'and changes nothing');

  await bySupabase.query(`INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), 'via supabase', 1)`);
  const [job] = await bySupabase.query(`SELECT data->>'table' AS tbl FROM pgboss.job WHERE name = 'search-sync.listings'`);
  t.same(job, { tbl: 'listings' }, 'a write enqueues through the triggers');
});

t.test('the queue migration refuses a database the service already installed, naming the repair command', async (t) => {
  const db = await createTestDatabase(t);
  const [, queueService] = await buildSupabaseMigrations();
  await t.rejects(applyAsSupabaseCli(db, queueService!.sql), { message: /already installed.*supabase migration repair --status applied 20260101000001/ });
});

t.test('the queue migration refuses a database without the app tables, naming them', async (t) => {
  const db = await createTestDatabase(t, { seed: false, migrate: false });
  const [, queueService] = await buildSupabaseMigrations();
  await t.rejects(applyAsSupabaseCli(db, queueService!.sql), { message: /syncs public.listings, public.inventory_items but they are missing/ });
});
