import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { packageRoot } from '../src/config/paths.ts';
import { createPool } from '../src/db/pool.ts';
import { createLogger } from '../src/config/logger.ts';
import { migrateLegacy } from '../src/tools/legacy.ts';
import { runCli } from './helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { fakeSearch } from './helpers/search.ts';
import { startService } from './helpers/service.ts';
import { waitForIdleQueue } from './sync-scenarios.ts';

const TABLE_ROW = '8f4c2a9e-1b6d-4c3e-9a7f-000000000001';
const BIKE = '8f4c2a9e-1b6d-4c3e-9a7f-000000000002';
const CAMERA = '8f4c2a9e-1b6d-4c3e-9a7f-000000000003';
const ITEM = 'c3d9e1f0-2a4b-4c5d-8e6f-000000000001';

/** A database as a team arrives with it: the legacy queue and triggers, rows in every status. */
async function legacyDatabase(t: Test, prepare?: (db: TestDatabase) => Promise<void>): Promise<TestDatabase> {
  const db = await createTestDatabase(t);
  await db.query(await readFile(join(packageRoot, 'test/fixtures/legacy.sql'), 'utf8'));
  await prepare?.(db);
  await db.query(
    `INSERT INTO elasticsearch_sync_queue (table_name, operation, record_id, status, retry_count, error_message) VALUES
       ('listings', 'UPDATE', $1, 'pending', 0, NULL),
       ('listings', 'UPDATE', $1, 'pending', 0, NULL),
       ('listings', 'UPDATE', $2, 'failed', 5, 'connect ECONNREFUSED'),
       ('listings', 'DELETE', $3, 'processing', 1, NULL),
       ('listings', 'INSERT', $1, 'completed', 0, NULL),
       ('listings', 'INSERT', $2, 'migrated', 0, NULL),
       ('inventory_items', 'UPDATE', $4, 'pending', 0, NULL),
       ('orders', 'INSERT', '42', 'pending', 0, NULL),
       ('listings', 'INSERT', 'not-a-uuid', 'failed', 3, 'bad id')`,
    [TABLE_ROW, BIKE, CAMERA, ITEM],
  );
  return db;
}

const statuses = (db: TestDatabase) =>
  db.query(`SELECT table_name, record_id, status FROM elasticsearch_sync_queue ORDER BY id`);
const jobs = (db: TestDatabase) =>
  db.query<{ name: string; key: string; state: string; data: unknown }>(
    `SELECT name, singleton_key AS key, state, data FROM pgboss.job WHERE name LIKE 'search-sync.%' ORDER BY name, singleton_key`,
  );
const legacyTriggers = (db: TestDatabase) =>
  db.query(`SELECT tgrelid::regclass::text AS table_name, tgname FROM pg_trigger WHERE tgname LIKE '%elasticsearch_sync' ORDER BY 1`);

async function moveLegacy(db: TestDatabase, dryRun = false) {
  const pool = createPool(db.url, { max: 2, statementTimeoutMs: 10_000, applicationName: 'test' }, createLogger('silent'));
  try {
    return await migrateLegacy(pool, { dryRun });
  } finally {
    await pool.end();
  }
}

t.test('a dry run prints what would move and drop, per table and status, and changes nothing', async (t) => {
  const db = await legacyDatabase(t);
  const before = { rows: await statuses(db), jobs: await jobs(db), triggers: await legacyTriggers(db) };
  const run = await runCli(['migrate-legacy', '--dry-run'], { DATABASE_URL: db.url });
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /nothing was changed/);
  t.match(run.stdout, /would move 5 rows of public\.elasticsearch_sync_queue/);
  t.match(run.stdout, /inventory_items\s+pending\s+1\n/);
  t.match(run.stdout, /listings\s+pending\s+2\n\s+listings\s+processing\s+1\n\s+listings\s+failed\s+1/);
  t.match(run.stdout, /left untouched[^\n]*\n\s+listings\s+failed\s+1\s+record_id is not a key of the table \(e\.g\. not-a-uuid\)\n\s+orders\s+pending\s+1\s+not a synced table/);
  t.match(run.stdout, /would drop legacy triggers[^\n]*\n\s+inventory_items_elasticsearch_sync\s+on public\.inventory_items\n\s+listings_elasticsearch_sync\s+on public\.listings/);
  t.match(run.stdout, /kept as the archive: 1 completed \(listings\), 1 migrated \(listings\)/);
  t.same({ rows: await statuses(db), jobs: await jobs(db), triggers: await legacyTriggers(db) }, before);
});

t.test('unfinished rows become one job per row, are marked migrated, and the legacy triggers are dropped', async (t) => {
  const db = await legacyDatabase(t);
  const report = await moveLegacy(db);
  t.same(report.moved, [
    { table: 'inventory_items', status: 'pending', rows: 1 },
    { table: 'listings', status: 'pending', rows: 2 },
    { table: 'listings', status: 'processing', rows: 1 },
    { table: 'listings', status: 'failed', rows: 1 },
  ]);
  t.equal(report.jobsCreated, 4, 'the two rows for one listing coalesced');
  t.same(
    (await jobs(db)).map((j) => [j.name, j.key, j.state]),
    [
      ['search-sync.inventory_items', ITEM, 'created'],
      ['search-sync.listings', TABLE_ROW, 'created'],
      ['search-sync.listings', BIKE, 'created'],
      ['search-sync.listings', CAMERA, 'created'],
    ],
  );
  t.same((await jobs(db)).find((j) => j.key === BIKE)?.data, { table: 'listings', id: BIKE }, 'the same job data as a trigger job');
  t.same(
    (await statuses(db)).map((r) => r.status),
    ['migrated', 'migrated', 'migrated', 'migrated', 'completed', 'migrated', 'migrated', 'pending', 'failed'],
    'moved rows are marked migrated; the archive, the unknown table and the bad id are untouched',
  );
  t.same(await legacyTriggers(db), []);
  const [processedAt] = await db.query(`SELECT count(*)::int AS n FROM elasticsearch_sync_queue WHERE status = 'migrated' AND processed_at IS NOT NULL`);
  t.equal(processedAt?.n, 5, 'processed_at records when each moved row was migrated');

  await db.query(`UPDATE listings SET title = 'after the migration' WHERE id = $1`, [BIKE]);
  const [legacyRows] = await db.query(`SELECT count(*)::int AS n FROM elasticsearch_sync_queue`);
  t.equal(legacyRows?.n, 9, 'app writes no longer reach the legacy queue');
});

t.test('the moved jobs bring the index up to date', async (t) => {
  const db = await legacyDatabase(t);
  await moveLegacy(db);
  const { fake } = await fakeSearch(t);
  await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  t.same([...fake.documents('listings').keys()].sort(), [TABLE_ROW, BIKE, CAMERA]);
  t.same([...fake.documents('inventory_items').keys()], [ITEM]);
});

t.test('run twice, the second run moves nothing', async (t) => {
  const db = await legacyDatabase(t);
  await moveLegacy(db);
  const after = { rows: await statuses(db), jobs: await jobs(db) };
  const run = await runCli(['migrate-legacy'], { DATABASE_URL: db.url });
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /no pending, processing or failed rows to move/);
  t.match(run.stdout, /no legacy triggers on the synced tables/);
  t.same({ rows: await statuses(db), jobs: await jobs(db) }, after);
});

t.test('--rollback restores the legacy triggers, so writes reach the legacy queue again', async (t) => {
  const db = await legacyDatabase(t);
  const before = await legacyTriggers(db);
  await moveLegacy(db);
  const run = await runCli(['migrate-legacy', '--rollback'], { DATABASE_URL: db.url });
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /restored legacy trigger listings_elasticsearch_sync on public\.listings/);
  t.same(await legacyTriggers(db), before);
  await db.query(`UPDATE listings SET title = 'back on the old processor' WHERE id = $1`, [BIKE]);
  const [row] = await db.query(`SELECT status, operation FROM elasticsearch_sync_queue WHERE record_id = $1 ORDER BY id DESC LIMIT 1`, [BIKE]);
  t.same(row, { status: 'pending', operation: 'UPDATE' });
  const again = await runCli(['migrate-legacy', '--rollback'], { DATABASE_URL: db.url });
  t.equal(again.code, 0);
  t.match(again.stdout, /nothing to restore/);
});

t.test('a failure part way changes nothing: rows, jobs and triggers stay as they were', async (t) => {
  const db = await legacyDatabase(t);
  // A legacy table whose status check does not know `migrated`: marking the first row fails,
  // after jobs were enqueued and before the triggers were dropped.
  await db.query(`DELETE FROM elasticsearch_sync_queue WHERE status = 'migrated'`);
  await db.query(
    `ALTER TABLE elasticsearch_sync_queue DROP CONSTRAINT elasticsearch_sync_queue_status_check,
       ADD CONSTRAINT legacy_status CHECK (status IN ('pending', 'processing', 'completed', 'failed'))`,
  );
  const before = { rows: await statuses(db), jobs: await jobs(db), triggers: await legacyTriggers(db) };
  const run = await runCli(['migrate-legacy'], { DATABASE_URL: db.url });
  t.equal(run.code, 1);
  t.match(run.stderr, /refuses the status 'migrated' \(check constraint legacy_status\)/);
  t.match(run.stderr, /Nothing was changed/);
  t.notMatch(run.stderr, /\n\s+at /, 'no stack trace');
  t.same({ rows: await statuses(db), jobs: await jobs(db), triggers: await legacyTriggers(db) }, before);
});

t.test('extra legacy columns are ignored; a missing one is named', async (t) => {
  const db = await legacyDatabase(t, async (db) => {
    await db.query(`ALTER TABLE elasticsearch_sync_queue ADD COLUMN priority integer NOT NULL DEFAULT 0, DROP COLUMN change_data`);
  });
  const report = await moveLegacy(db, true);
  t.equal(report.moved.reduce((n, c) => n + c.rows, 0), 5);
  t.same(report.absentColumns, ['change_data']);

  await db.query(`ALTER TABLE elasticsearch_sync_queue RENAME COLUMN record_id TO row_id`);
  const run = await runCli(['migrate-legacy', '--dry-run'], { DATABASE_URL: db.url });
  t.equal(run.code, 1);
  t.match(run.stderr, /public\.elasticsearch_sync_queue has no column record_id; migrate-legacy reads id, table_name, record_id, status \(found: .*row_id/);
});

t.test('without a legacy queue there is nothing to migrate, said plainly', async (t) => {
  const db = await createTestDatabase(t);
  const run = await runCli(['migrate-legacy'], { DATABASE_URL: db.url });
  t.equal(run.code, 1);
  t.match(run.stderr, /there is no public\.elasticsearch_sync_queue in this database: nothing to migrate/);
});
