// Elasticsearch faults: rows are written while the fault lasts, then the index must equal the
// database (every row's latest state, nothing lost, nothing stale).
import t from 'tap';
import { createTestDatabase, sleep } from '../helpers/database.ts';
import { fakeSearch } from '../helpers/search.ts';
import { startService } from '../helpers/service.ts';
import { converge, report, startWriter, syncExistingRows, writtenRows } from './helpers.ts';

const bulkOnly = (status: number) => ({ path }: { path: string }) =>
  path.includes('_bulk') ? { status, body: { error: { type: 'unavailable', reason: 'injected outage' }, status } } : undefined;

t.test('Elasticsearch down (503 on everything) for 10 s', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  await syncExistingRows(db);
  await startService(t, db, fake.url);
  const writer = startWriter(db);
  await sleep(1000);
  fake.faults.request = () => ({ status: 503, body: { error: { type: 'unavailable', reason: 'injected outage' }, status: 503 } });
  await sleep(10_000);
  fake.faults.request = undefined;
  const stats = await writer.stop();
  const { seconds, last } = await converge(db, fake);
  const [dead] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name LIKE '%.dead'`);
  t.equal(dead!.n, 0, 'nothing dead-lettered');
  report(t, { scenario: 'Elasticsearch down', injected: '503 on every request', faultSeconds: 10, rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});

t.test('Elasticsearch down for longer than the retry budget: replaying the dead letters restores everything', async (t) => {
  const { fake } = await fakeSearch(t);
  const budget = { SYNC_RETRY_LIMIT: '2', SYNC_RETRY_DELAY_SECONDS: '1', SYNC_RETRY_DELAY_MAX_SECONDS: '1' };
  const db = await createTestDatabase(t, { env: budget });
  await syncExistingRows(db);
  const token = 'fault-suite-api-token-0123456789';
  const service = await startService(t, db, fake.url, { ...budget, API_TOKEN: token });
  const writer = startWriter(db);
  fake.faults.request = bulkOnly(503);
  await sleep(10_000);
  fake.faults.request = undefined;
  const stats = await writer.stop();
  await sleep(1500);
  const [dead] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'search-sync.listings.dead'`);
  t.ok(dead!.n > 0, `${dead!.n} jobs dead-lettered during the outage`);
  const replayStarted = Date.now();
  // What an operator does: replay the queue's dead letters through the API.
  const replay = await service.app.inject({ method: 'POST', url: '/api/v1/queue/dead-letters/replay', headers: { authorization: `Bearer ${token}` }, payload: { queue: 'search-sync.listings' } });
  t.equal(replay.statusCode, 200, replay.body);
  t.equal(replay.json().replayed, dead!.n, 'every dead letter replayed');
  const { last } = await converge(db, fake);
  // Counted from the replay: until then the dead letters wait for an operator, by design.
  report(t, { scenario: 'Elasticsearch down past the retry budget, then dead letters replayed', injected: '503 on every bulk; retry budget of 2 retries', faultSeconds: 10, rowsWritten: writtenRows(stats), convergeSeconds: (Date.now() - replayStarted) / 1000 }, last);
});

t.test('Elasticsearch answering 429 to most bulk items for 30 s', async (t) => {
  const { fake } = await fakeSearch(t);
  const retries = { SYNC_RETRY_DELAY_SECONDS: '1', SYNC_RETRY_DELAY_MAX_SECONDS: '8' };
  const db = await createTestDatabase(t, { env: retries });
  await syncExistingRows(db);
  await startService(t, db, fake.url, retries);
  const writer = startWriter(db);
  let items = 0;
  fake.faults.item = () => (items++ % 5 !== 0 ? { status: 429, type: 'es_rejected_execution_exception', reason: 'rejected execution of coordinating operation' } : undefined);
  await sleep(30_000);
  fake.faults.item = undefined;
  const stats = await writer.stop();
  const { seconds, last } = await converge(db, fake);
  const [dead] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name LIKE '%.dead'`);
  t.equal(dead!.n, 0, 'nothing dead-lettered');
  report(t, { scenario: 'Elasticsearch rejecting most items', injected: '429 on 4 of every 5 bulk items', faultSeconds: 30, rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});

t.test('slow Elasticsearch: responses slower than the request timeout', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  await syncExistingRows(db);
  await startService(t, db, fake.url, { ELASTICSEARCH_REQUEST_TIMEOUT_MS: '1000' });
  const writer = startWriter(db);
  // Applied when they arrive, answered after the client gave up: the retries race the late writes.
  fake.faults.bulkDelayMs = 1500;
  await sleep(10_000);
  fake.faults.bulkDelayMs = 0;
  const stats = await writer.stop();
  const { seconds, last } = await converge(db, fake);
  report(t, { scenario: 'Elasticsearch slower than the request timeout', injected: 'bulk responses 1.5 s late, request timeout 1 s', faultSeconds: 10, rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});
