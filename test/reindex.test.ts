import t from 'tap';
import { createLogger } from '../src/config/logger.ts';
import { createSearchClient } from '../src/search/client.ts';
import { createProgress } from '../src/tools/progress.ts';
import { enqueueTable } from '../src/tools/reindex.ts';
import { runCli } from './helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { fakeSearch } from './helpers/search.ts';
import { startService } from './helpers/service.ts';
import { progressHook, shapeOf } from './helpers/tools.ts';
import { insertListings, version, waitForIdleQueue } from './sync-scenarios.ts';

/** Rows whose jobs have long completed and been cleaned up: what a reindex starts from. */
async function rowsWithoutJobs(db: TestDatabase, count: number): Promise<string[]> {
  const ids = await insertListings(db, count);
  await db.query(`DELETE FROM pgboss.job WHERE name LIKE 'search-sync.%'`);
  return ids;
}

const jobsPerKey = (db: TestDatabase) =>
  db.query<{ key: string; n: number }>(
    `SELECT singleton_key AS key, count(*)::int AS n FROM pgboss.job WHERE name = 'search-sync.listings' AND state = 'created' GROUP BY 1`,
  );

t.test('reindex enqueues every row in keyset batches and logs its progress off a terminal', async (t) => {
  const db = await createTestDatabase(t);
  const ids = await rowsWithoutJobs(db, 2497);
  const before = await version(db, ids[0]!);
  const run = await runCli(['reindex', '--table', 'listings', '--batch-size', '500'], { DATABASE_URL: db.url, LOG_LEVEL: 'info' });
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /listings: 2500 rows enqueued as 2500 new jobs\n/);
  const lines = run.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; done: number; total: number });
  const progress = lines.filter((l) => l.msg === 'reindex listings progress').map((l) => l.done);
  t.same(progress, [500, 1000, 1500, 2000, 2500], 'a line per tenth of the way (each batch here)');
  t.ok(lines.some((l) => l.msg === 'reindex listings finished' && l.total === 2500));
  const perKey = await jobsPerKey(db);
  t.equal(perKey.length, 2500, 'one job for every row');
  t.ok(perKey.every((k) => k.n === 1));
  t.ok((await version(db, ids[0]!)) > before, 'each row got a new version, so its job rewrites the document');
});

t.test('on a terminal reindex draws a progress bar', async (t) => {
  const db = await createTestDatabase(t);
  await rowsWithoutJobs(db, 297);
  let screen = '';
  const terminal = { isTTY: true, columns: 100, write: (text: string) => ((screen += text), true) };
  const progress = createProgress({ stream: terminal, log: createLogger('silent') });
  await enqueueTable({ pool: db.pool, progress }, await shapeOf(db, 'listings'), { batchSize: 100, bump: true });
  t.match(screen, /\rreindex listings \[-{30}\] 0% 0\/300/);
  t.match(screen, /\rreindex listings \[#{30}\] 100% 300\/300\x1b\[K\n$/);
});

t.test('a reindex joins the jobs live writes left waiting, and every row ends with its last state', async (t) => {
  const db = await createTestDatabase(t);
  const ids = await insertListings(db, 2000); // their trigger jobs wait: no worker runs yet
  let writing = true;
  let writes = 0;
  const writer = (async () => {
    while (writing) {
      const id = ids[Math.floor(Math.random() * ids.length)]!;
      await db.query(`UPDATE listings SET price_cents = price_cents + 1, title = 'written live ' || $2 WHERE id = $1`, [id, ++writes]);
    }
  })();
  const result = await enqueueTable({ pool: db.pool, progress: progressHook(() => {}) }, await shapeOf(db, 'listings'), { batchSize: 200, bump: true });
  writing = false;
  await writer;
  t.equal(result.rows, 2003);
  t.equal(result.jobsCreated, 3, 'only the seed rows (older than the triggers) had no job waiting; the 2000 others joined theirs');
  t.ok(writes > 0, `${writes} live writes during the reindex`);
  t.ok((await jobsPerKey(db)).every((k) => k.n === 1), 'never two jobs waiting for one row');

  const { fake } = await fakeSearch(t);
  await startService(t, db, fake.url);
  await waitForIdleQueue(db, 60_000);
  const rows = await db.query<{ id: string; title: string; version: number }>(
    `SELECT l.id, l.title, v.version FROM listings l JOIN queue.listings_version v USING (id)`,
  );
  const wrong = rows.filter((r) => fake.get('listings', r.id)?.version !== r.version || fake.get('listings', r.id)?.source?.title !== r.title);
  t.same(wrong, [], 'every document has its row\'s last title and version');
});

t.test('an interrupted reindex loses nothing, and running it again finishes', async (t) => {
  const db = await createTestDatabase(t);
  await rowsWithoutJobs(db, 997);
  const shape = await shapeOf(db, 'listings');
  const stop = new AbortController();
  const first = await enqueueTable({ pool: db.pool, progress: progressHook(() => stop.abort()), signal: stop.signal }, shape, { batchSize: 100, bump: true });
  t.same({ rows: first.rows, interrupted: first.interrupted }, { rows: 100, interrupted: true }, 'stopped after the batch in flight');
  t.equal((await jobsPerKey(db)).length, 100, 'what it enqueued is committed');
  const second = await enqueueTable({ pool: db.pool, progress: progressHook(() => {}) }, shape, { batchSize: 100, bump: true });
  t.same({ rows: second.rows, interrupted: second.interrupted, jobsCreated: second.jobsCreated }, { rows: 1000, interrupted: false, jobsCreated: 900 });
  t.equal((await jobsPerKey(db)).length, 1000);
});

t.test('a document deleted from the index by hand comes back with a reindex', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  await startService(t, db, fake.url);
  await insertListings(db, 20);
  await waitForIdleQueue(db);
  // Every row is at version 0 and the clock has issued nothing: the row first in key order is the
  // one the reindex bumps first, and a bump to the clock's next value would tie its tombstone.
  const [first] = await db.query<{ id: string }>(`SELECT id FROM listings ORDER BY id LIMIT 1`);
  const id = first!.id;
  const client = createSearchClient({ url: fake.url, requestTimeoutMs: 5000 });
  t.teardown(() => client.close());
  await client.delete({ index: 'listings', id });
  t.equal(fake.get('listings', id), undefined);
  const run = await runCli(['reindex', '--table', 'listings'], { DATABASE_URL: db.url });
  t.equal(run.code, 0, run.stderr);
  await waitForIdleQueue(db);
  t.ok((await version(db, id)) > 1, 'the bump outranks the tombstone');
  t.equal(fake.get('listings', id)?.version, await version(db, id), 'the document is back at the bumped version');
});

t.test('reindex names a table it does not sync, and the ones it does; a bad option shows the usage', async (t) => {
  const db = await createTestDatabase(t);
  const run = await runCli(['reindex', '--table', 'orders'], { DATABASE_URL: db.url });
  t.equal(run.code, 1);
  t.match(run.stderr, /"orders" is not a synced table \(synced tables: listings, inventory_items\)/);
  const bad = await runCli(['reindex', '--batch-size', 'lots'], { DATABASE_URL: db.url });
  t.match(bad.stderr, /--batch-size must be a whole number between 1 and 50000, got "lots"/);
  const unknown = await runCli(['reindex', '--tables', 'listings'], { DATABASE_URL: db.url });
  t.match(unknown.stderr, /Unknown option '--tables'[\s\S]*usage: queue-service reindex/);
  const help = await runCli(['reindex', '--help'], { DATABASE_URL: db.url });
  t.same({ code: help.code, stdout: help.stdout }, { code: 0, stdout: 'usage: queue-service reindex [--table T] [--batch-size N] [--rebuild [--replace-index] | --abort]\n' });
});
