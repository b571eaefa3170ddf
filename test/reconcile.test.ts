import { randomUUID } from 'node:crypto';
import t from 'tap';
import { ConfigError, readEnv } from '../src/config/env.ts';
import { driftCount, reconcileTable } from '../src/tools/reconcile.ts';
import { startBoss } from './helpers/boss.ts';
import { runCli } from './helpers/cli.ts';
import { createTestDatabase, eventually, sleep, type TestDatabase } from './helpers/database.ts';
import type { FakeElasticsearch } from './helpers/fake-elasticsearch.ts';
import { waitForJob } from './helpers/jobs.ts';
import { fakeSearch } from './helpers/search.ts';
import { spawnService, startService } from './helpers/service.ts';
import { shapeOf, syncedListings, toolDeps } from './helpers/tools.ts';
import { insertListings, version, waitForIdleQueue } from './sync-scenarios.ts';

interface Drift {
  missing: string[];
  stale: string[];
  ahead: string;
  orphans: string[];
  notAKey: string;
}

/** Drift of every kind, made behind the service's back, as operators meet it. */
async function seedDrift(db: TestDatabase, fake: FakeElasticsearch, ids: string[]): Promise<Drift> {
  const docs = fake.indices.get('listings_v1')!.docs;
  const client = toolDeps({ teardown: () => {} } as never, db, fake.url).search;
  // Missing: one gone without a trace (a restored snapshot), one deleted by hand (a tombstone
  // one version above the row's, which a plain rewrite would lose to).
  docs.delete(ids[0]!);
  await client.delete({ index: 'listings', id: ids[1]! });
  await client.close();
  // Stale: an older version with older content (the row has moved on to a version the index
  // never saw), and one newer than the database ever issued.
  await db.query(`SELECT queue.bump_versions('public.listings', ARRAY[$1])`, [ids[2]]);
  docs.set(ids[2]!, { version: (await version(db, ids[2]!)) - 1, source: { id: ids[2], title: 'an old title' } });
  docs.set(ids[3]!, { version: (await version(db, ids[3]!)) + 1000, source: { id: ids[3], title: 'from a database since restored' } });
  // Orphans: a row deleted long ago whose document stayed, and an id that is no key at all.
  const gone = randomUUID();
  docs.set(gone, { version: 7, source: { id: gone, title: 'deleted row' } });
  docs.set('junk-id', { version: 1, source: { id: 'junk-id', title: 'not from this table' } });
  return { missing: [ids[0]!, ids[1]!], stale: [ids[2]!, ids[3]!], ahead: ids[3]!, orphans: [gone, 'junk-id'], notAKey: 'junk-id' };
}

const sorted = (values: string[]) => [...values].sort();


t.test('reconcile reports seeded missing, stale and orphan documents; --repair fixes exactly those; then it is clean', async (t) => {
  const { fake, db, ids } = await syncedListings(t, 40);
  const drift = await seedDrift(db, fake, ids);
  const searches: { size?: number; sort?: unknown }[] = [];
  fake.faults.request = ({ path, body }) => {
    if (path.endsWith('/_search')) searches.push(JSON.parse(body));
    return undefined;
  };
  const env = { DATABASE_URL: db.url, ELASTICSEARCH_URL: fake.url };

  const report = await runCli(['reconcile', '--table', 'listings', '--chunk-size', '10'], env);
  t.equal(report.code, 1, 'exit 1: drift found');
  t.match(report.stdout, /listings: 40 rows, 40 documents in listings: 6 drifted/);
  t.match(report.stdout, new RegExp(`missing\\s+2\\s+(${drift.missing.join(', ')}|${[...drift.missing].reverse().join(', ')})`));
  t.match(report.stdout, /stale\s+2\s/);
  t.match(report.stdout, /orphaned\s+2\s/);
  t.match(report.stdout, /1 stale documents carry versions newer than the database's/);
  t.match(report.stdout, /run reconcile --repair/);
  t.ok(searches.length > 8 && searches.every((s) => (s.size ?? 10) <= 10), `${searches.length} searches, none larger than a chunk`);
  t.ok(searches.every((s) => !JSON.stringify(s.sort ?? '').includes('_id')), 'never sorted on _id');
  const [waiting] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'search-sync.listings' AND state < 'active'`);
  t.equal(waiting?.n, 0, 'without --repair nothing is enqueued');

  const repairStarted = new Date();
  const repair = await runCli(['reconcile', '--table', 'listings', '--repair'], env);
  t.equal(repair.code, 1, 'exit 1: drift found, fixes enqueued');
  t.match(repair.stdout, /repair: 6 drifted ids enqueued/);
  const repairJobs = await db.query<{ key: string }>(`SELECT singleton_key AS key FROM pgboss.job WHERE name = 'search-sync.listings' AND created_on >= $1`, [repairStarted]);
  t.same(sorted(repairJobs.map((j) => j.key)), sorted([...drift.missing, ...drift.stale, drift.orphans[0]!]), 'exactly the drifted ids that are keys were enqueued');
  t.equal(fake.get('listings', drift.notAKey), undefined, 'the document whose id is no key was deleted directly');
  await waitForIdleQueue(db);

  for (const id of [...drift.missing, ...drift.stale]) {
    const [row] = await db.query<{ title: string }>(`SELECT title FROM listings WHERE id = $1`, [id]);
    t.match(fake.get('listings', id), { version: await version(db, id), source: { title: row!.title } }, `${id} has its row's content and version again`);
  }
  t.ok((await version(db, drift.ahead)) > 1000, 'the version clock moved past the restored versions');
  t.equal(fake.get('listings', drift.orphans[0]!), undefined, 'the orphan is deleted');

  const clean = await runCli(['reconcile', '--table', 'listings'], env);
  t.equal(clean.code, 0, clean.stdout + clean.stderr);
  t.match(clean.stdout, /listings: 40 rows, 40 documents in listings: no drift/);

  const runs = await db.query(`SELECT source, repair, status, missing, stale, orphaned, repaired FROM queue.reconcile_runs ORDER BY id`);
  t.same(runs, [
    { source: 'cli', repair: false, status: 'drift', missing: 2, stale: 2, orphaned: 2, repaired: 0 },
    { source: 'cli', repair: true, status: 'drift', missing: 2, stale: 2, orphaned: 2, repaired: 6 },
    { source: 'cli', repair: false, status: 'clean', missing: 0, stale: 0, orphaned: 0, repaired: 0 },
  ]);
  const [latest] = await db.query(`SELECT table_name, status, sample FROM queue.reconcile_latest WHERE table_name = 'listings'`);
  t.same(latest, { table_name: 'listings', status: 'clean', sample: { missing: [], stale: [], orphaned: [] } });
});

t.test('a reconcile during a stream of live writes reports no drift: rows catching up are in flight', async (t) => {
  const { fake, db, ids } = await syncedListings(t, 400);
  fake.faults.bulkDelayMs = 100; // the index lags the database throughout
  let writing = true;
  const writer = (async () => {
    while (writing) {
      ids.push(...(await insertListings(db, 2, 'live')));
      await db.query(`UPDATE listings SET price_cents = price_cents + 1 WHERE id = $1`, [ids[Math.floor(Math.random() * ids.length)]]);
      await db.query(`DELETE FROM listings WHERE id = $1`, [ids.splice(Math.floor(Math.random() * 400), 1)[0]]);
      await sleep(5);
    }
  })();
  const report = await reconcileTable(toolDeps(t, db, fake.url), await shapeOf(db, 'listings'), { alias: 'listings', repair: false, chunkSize: 10 });
  writing = false;
  await writer;
  t.equal(driftCount(report), 0, `no drift reported (${report.inFlight} ids were in flight)`);
  t.ok(report.inFlight > 0, 'the writes did overlap the check');
});

t.test('reconcile exits 2, without a stack, when Elasticsearch cannot be reached; the run is recorded', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  fake.faults.request = () => ({ status: 503, body: { error: { type: 'unavailable', reason: 'cluster is restarting' }, status: 503 } });
  const run = await runCli(['reconcile'], { DATABASE_URL: db.url, ELASTICSEARCH_URL: fake.url });
  t.equal(run.code, 2);
  t.match(run.stdout, /listings: reconcile failed: HTTP 503: unavailable: cluster is restarting/);
  t.notMatch(run.stdout + run.stderr, /\n\s+at /);
  const runs = await db.query(`SELECT table_name, status, error FROM queue.reconcile_runs ORDER BY table_name`);
  t.match(runs, [
    { table_name: 'inventory_items', status: 'error', error: /503/ },
    { table_name: 'listings', status: 'error', error: /503/ },
  ]);
  const missing = await runCli(['reconcile'], { DATABASE_URL: db.url });
  t.equal(missing.code, 2);
  t.match(missing.stderr, /ELASTICSEARCH_URL must be set for reconcile/);
});

t.test('the service schedules reconcile --repair, and a scheduled run repairs, logs and records its result', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const service = spawnService(t, db, fake.url, { RECONCILE_CRON: '30 2 * * *' });
  await service.url;
  await db.query(`DELETE FROM listings`); // the sample rows were never indexed
  const ids = await insertListings(db, 10);
  await waitForIdleQueue(db);
  const [schedule] = await db.query(`SELECT name, cron, timezone, data FROM pgboss.schedule`);
  t.same(schedule, { name: 'maintenance.reconcile', cron: '30 2 * * *', timezone: 'UTC', data: { repair: true } });

  fake.indices.get('listings_v1')!.docs.delete(ids[4]!);
  // What pg-boss's timekeeper sends when the cron comes due.
  const boss = await startBoss(t, db.url);
  const jobId = (await boss.send('maintenance.reconcile', schedule!.data as object))!;
  const runs = await eventually(async () => {
    const rows = await db.query(`SELECT table_name, source, repair, status, missing, repaired FROM queue.reconcile_runs ORDER BY table_name`);
    return rows.length === 2 ? rows : undefined;
  }, { timeoutMs: 20_000 });
  t.same(runs, [
    { table_name: 'inventory_items', source: 'schedule', repair: true, status: 'clean', missing: 0, repaired: 0 },
    { table_name: 'listings', source: 'schedule', repair: true, status: 'drift', missing: 1, repaired: 1 },
  ]);
  await waitForIdleQueue(db);
  t.ok(fake.get('listings', ids[4]!), 'the scheduled repair restored the document');
  await eventually(async () => /"msg":"reconcile: drift found and repair enqueued"/.test(service.output()));
  t.match(service.output(), /"table":"listings"[^\n]*"missing":1[^\n]*"repaired":1/);
  // The run is recorded and logged before pg-boss marks its job completed.
  const job = await waitForJob(db, jobId, ['completed']);
  t.match(job.output, { listings: { drift: 1, missing: 1, repaired: 1 } });
});

t.test('RECONCILE_CRON=off removes the schedule; a bad expression is refused at start-up', async (t) => {
  const db = await createTestDatabase(t);
  const first = await startService(t, db, null);
  t.same(await db.query(`SELECT cron FROM pgboss.schedule WHERE name = 'maintenance.reconcile'`), [{ cron: '0 3 * * *' }], 'nightly by default');
  await first.stop();
  await startService(t, db, null, { RECONCILE_CRON: 'off' });
  t.same(await db.query(`SELECT cron FROM pgboss.schedule`), []);
  t.throws(() => readEnv({ RECONCILE_CRON: '61 3 * * *' }), ConfigError);
  t.throws(() => readEnv({ RECONCILE_CRON: 'nightly' }), /RECONCILE_CRON must be a cron expression of five fields \(minute hour day month weekday\) or "off", got "nightly"/);
});
