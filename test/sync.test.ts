import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import { createTestDatabase, eventually, sleep } from './helpers/database.ts';
import { fakeSearch } from './helpers/search.ts';
import { spawnService, startService } from './helpers/service.ts';
import { insertListings, scenarios, version, waitForIdleQueue } from './sync-scenarios.ts';

for (const scenario of scenarios) {
  t.test(scenario.name, async (t) => {
    const { backend } = await fakeSearch(t);
    await scenario.run(t, backend);
  });
}

const deadLetters = (db: Awaited<ReturnType<typeof createTestDatabase>>) =>
  db.query<{ key: string; output: Record<string, unknown> }>(
    `SELECT singleton_key AS key, source_output AS output FROM pgboss.job WHERE name = 'search-sync.listings.dead'`,
  );

t.test('429 on an item is retried until it succeeds', async (t) => {
  const { fake } = await fakeSearch(t);
  let refusals = 2;
  fake.faults.item = () => (refusals-- > 0 ? { status: 429, type: 'es_rejected_execution_exception', reason: 'rejected execution' } : undefined);
  const db = await createTestDatabase(t);
  await startService(t, db, fake.url);
  const [id] = await insertListings(db, 1);
  await eventually(async () => fake.get('listings', id!), { timeoutMs: 20_000 });
  await waitForIdleQueue(db);
  const [job] = await db.query(`SELECT retry_count, state FROM pgboss.job WHERE singleton_key = $1`, [id]);
  t.same(job, { retry_count: 2, state: 'completed' });
  t.same(await deadLetters(db), []);
});

t.test('a 10 s outage, with writes during it, ends with every row indexed and nothing dead-lettered', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  fake.faults.request = ({ path }) => (path.includes('_bulk') ? { status: 503, body: { error: { type: 'unavailable', reason: 'outage' }, status: 503 } } : undefined);
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    ids.push(...(await insertListings(db, 20, `during outage ${i}`)));
    await sleep(1000);
  }
  fake.faults.request = undefined;
  await waitForIdleQueue(db, 60_000);
  t.equal(ids.filter((id) => fake.get('listings', id)).length, ids.length, 'all 200 rows indexed');
  t.same(await deadLetters(db), []);
});

t.test('one rejected document is dead-lettered with its reason while the rest of its batch is indexed', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const ids = await insertListings(db, 50);
  const bad = ids[17]!;
  fake.faults.item = (item) => (item.id === bad ? { status: 400, type: 'document_parsing_exception', reason: '[1:42] failed to parse field [price_cents] of type [long]' } : undefined);
  await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  t.equal(ids.filter((id) => fake.get('listings', id)).length, 49);
  const dead = await deadLetters(db);
  t.equal(dead.length, 1);
  t.equal(dead[0]!.key, bad);
  t.match(dead[0]!.output, { status: 400, error: 'document_parsing_exception', reason: /failed to parse field \[price_cents\]/ });
});

t.test('a 413 splits the batch until the pieces fit', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const ids = await insertListings(db, 100);
  // Refuse any request carrying more than 30 documents (60 NDJSON lines).
  fake.faults.request = ({ path, body }) => (path.includes('_bulk') && body.split('\n').filter(Boolean).length > 60 ? { status: 413, body: 'Request Entity Too Large' } : undefined);
  await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  t.equal(ids.filter((id) => fake.get('listings', id)).length, 100);
  t.ok(fake.bulkRequests.every((r) => r.length <= 30), 'every accepted request fits');
  t.same(await deadLetters(db), []);
});

t.test('a failing job with a newer job waiting for its row is superseded, not retried', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const [id] = await insertListings(db, 1, 'first');
  fake.faults.item = (item) => {
    if (item.id !== id || item.source?.title === 'second') return undefined;
    return { status: 503, type: 'unavailable_shards_exception', reason: 'primary shard is not active' };
  };
  // While the first job's bulk is in flight, a new write queues a second job for the row.
  fake.faults.bulkDelayMs = 500;
  let written = false;
  fake.onBulk = () => {
    if (written) return;
    written = true;
    void db.query(`UPDATE listings SET title = 'second' WHERE id = $1`, [id]);
  };
  await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  t.equal(fake.get('listings', id!)?.source?.title, 'second');
  const jobs = await db.query(`SELECT state, output->>'result' AS result FROM pgboss.job WHERE singleton_key = $1 ORDER BY created_on`, [id]);
  t.same(jobs, [
    { state: 'completed', result: 'superseded_by_waiting_job' },
    { state: 'completed', result: 'indexed' },
  ]);
  t.same(await deadLetters(db), []);
});

t.test('invalid job data is dead-lettered with the reason, never retried', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const service = await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  const bad = [
    [{ table: 'listings' }, /no id/],
    [{ table: 'inventory_items', id: '8f4c2a9e-1b6d-4c3e-9a7f-000000000001' }, /names table "inventory_items", but this queue syncs listings/],
    [{ table: 'listings', id: 'not-a-uuid' }, /not a uuid/],
    [{ table: 'listings', id: '8f4c2a9e-1b6d-4c3e-9a7f-000000000001', padding: 'x'.repeat(10_000) }, /bytes; a sync job carries only/],
  ] as const;
  // Each with a key of its own: the stately policy holds one waiting job per key.
  for (const [i, [data]] of bad.entries()) await service.boss.send('search-sync.listings', data, { singletonKey: `bad-${i}` });
  await waitForIdleQueue(db);
  const dead = await db.query<{ data: unknown; output: { reason: string } }>(`SELECT data, source_output AS output FROM pgboss.job WHERE name = 'search-sync.listings.dead'`);
  t.equal(dead.length, bad.length);
  for (const [data, reason] of bad) {
    const entry = dead.find((d) => isDeepStrictEqual(d.data, data));
    t.match(entry?.output.reason, reason);
  }
});

t.test('without ELASTICSEARCH_URL jobs wait, nothing is claimed, and /ready says why', async (t) => {
  const db = await createTestDatabase(t);
  const service = await startService(t, db, null);
  const ids = await insertListings(db, 5);
  await sleep(2500);
  const states = await db.query(`SELECT DISTINCT state FROM pgboss.job WHERE singleton_key = ANY ($1)`, [ids]);
  t.same(states, [{ state: 'created' }]);
  const ready = await service.app.inject({ method: 'GET', url: '/ready' });
  t.equal(ready.statusCode, 503);
  t.match(ready.json().reasons, [/ELASTICSEARCH_URL is not set: search sync is paused and jobs stay queued/]);
  t.equal((await service.app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
});

t.test('/ready is 200 when the database and Elasticsearch answer and the workers run', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const service = await startService(t, db, fake.url);
  const ready = await eventually(async () => {
    const res = await service.app.inject({ method: 'GET', url: '/ready' });
    return res.statusCode === 200 ? res.json() : undefined;
  });
  t.match(ready, { status: 'ready', reasons: [], checks: { workers: { ok: true, detail: '2 sync workers running' } } });
});

t.test('Elasticsearch unreachable at start: the service waits for it, then syncs what queued meanwhile', async (t) => {
  const { fake } = await fakeSearch(t);
  fake.faults.request = () => ({ status: 503 });
  const db = await createTestDatabase(t);
  const service = await startService(t, db, fake.url);
  const ids = await insertListings(db, 10);
  await sleep(1500);
  const res = await service.app.inject({ method: 'GET', url: '/ready' });
  t.equal(res.statusCode, 503);
  t.match(res.json().reasons, [/Elasticsearch is not reachable yet/]);
  fake.faults.request = undefined;
  await waitForIdleQueue(db);
  t.equal(ids.filter((id) => fake.get('listings', id)).length, 10);
});

t.test('a write held in the network that lands after a newer one, or after the delete, changes nothing', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  await startService(t, db, fake.url, { ELASTICSEARCH_REQUEST_TIMEOUT_MS: '1000' });
  const [id] = await insertListings(db, 1, 'old state');
  // The first request for the row is held until the newer states are in; the client gives up on
  // it after 1 s and the job is retried, as a real stuck request would be.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding = true;
  fake.faults.holdBulk = (items) => (holding && items.some((i) => i.id === id) ? ((holding = false), released) : undefined);
  await eventually(async () => !holding);
  await db.query(`UPDATE listings SET title = 'new state' WHERE id = $1`, [id]);
  await eventually(async () => fake.get('listings', id!)?.source?.title === 'new state 1' || fake.get('listings', id!)?.source?.title === 'new state');
  release();
  await sleep(300);
  t.equal(fake.get('listings', id!)?.source?.title, 'new state', 'the stale write that arrived last was refused');
  const itemsForRow = fake.itemsFor('listings').filter((i) => i.id === id);
  t.ok(itemsForRow.some((i) => i.source?.title === 'old state 1'), 'the stale state did reach Elasticsearch');

  holding = true;
  const released2 = new Promise<void>((resolve) => (release = resolve));
  fake.faults.holdBulk = (items) => (holding && items.some((i) => i.id === id) ? ((holding = false), released2) : undefined);
  await db.query(`UPDATE listings SET title = 'last state' WHERE id = $1`, [id]);
  await eventually(async () => !holding);
  await db.query(`DELETE FROM listings WHERE id = $1`, [id]);
  await eventually(async () => fake.get('listings', id!) === undefined && fake.itemsFor('listings').some((i) => i.id === id && i.action === 'delete'));
  release();
  await sleep(300);
  t.equal(fake.get('listings', id!), undefined, 'the held write does not bring the deleted row back');
});

t.test('a second SIGTERM exits at once, without waiting for the batch in flight', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  fake.faults.bulkDelayMs = 20_000;
  const service = spawnService(t, db, fake.url, { ELASTICSEARCH_REQUEST_TIMEOUT_MS: '30000', SYNC_EXPIRE_SECONDS: '60' });
  await service.url;
  await insertListings(db, 5);
  await eventually(async () => fake.bulkRequests.length > 0 || undefined, { timeoutMs: 20_000 });
  const started = Date.now();
  service.child.kill('SIGTERM');
  await sleep(300);
  service.child.kill('SIGTERM');
  const exit = await service.exited;
  t.ok(Date.now() - started < 5000, `exited ${Date.now() - started} ms after the signals, not after the 20 s bulk`);
  t.not(exit.code, 0, 'a forced exit is not a clean one');
  t.match(service.output(), /second signal/);
});

const SHORT_EXPIRY = { SYNC_EXPIRE_SECONDS: '5', DB_STATEMENT_TIMEOUT_MS: '2000', ELASTICSEARCH_REQUEST_TIMEOUT_MS: '4000' };

t.test('a worker killed mid-batch and started again re-syncs everything', async (t) => {
  const { fake } = await fakeSearch(t);
  // The expiry is the queue's: migrate writes it.
  const db = await createTestDatabase(t, { env: SHORT_EXPIRY });
  fake.faults.bulkDelayMs = 3000;
  const first = spawnService(t, db, fake.url, SHORT_EXPIRY);
  await first.url;
  const ids = await insertListings(db, 300);
  await eventually(async () => fake.bulkRequests.length > 0 || undefined, { timeoutMs: 20_000 });
  first.child.kill('SIGKILL');
  await first.exited;
  const [active] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE state = 'active'`);
  t.ok(active!.n > 0, `${active!.n} jobs were active when the worker died`);
  fake.faults.bulkDelayMs = 0;
  const second = spawnService(t, db, fake.url, SHORT_EXPIRY);
  await second.url;
  await waitForIdleQueue(db, 60_000);
  t.equal(ids.filter((id) => fake.get('listings', id)).length, 300);
  for (const id of ids.slice(0, 20)) t.equal(fake.get('listings', id)?.version, await version(db, id));
});

t.test('two worker processes at once: everything synced, never one row in two requests at the same time', async (t) => {
  const { fake } = await fakeSearch(t);
  fake.faults.bulkDelayMs = 20;
  const db = await createTestDatabase(t);
  const workers = [spawnService(t, db, fake.url, { SYNC_BATCH_SIZE: '50' }), spawnService(t, db, fake.url, { SYNC_BATCH_SIZE: '50' })];
  await Promise.all(workers.map((w) => w.url));
  const ids: string[] = [];
  for (let round = 0; round < 10; round++) {
    ids.push(...(await insertListings(db, 100, `round ${round}`)));
    await db.query(`UPDATE listings SET price_cents = price_cents + 1 WHERE id = ANY ($1)`, [ids.slice(-150)]);
  }
  await waitForIdleQueue(db, 60_000);
  t.equal(ids.filter((id) => fake.get('listings', id)).length, 1000);
  const overlaps: string[] = [];
  const log = fake.bulkLog;
  for (let i = 0; i < log.length; i++) {
    for (let j = i + 1; j < log.length; j++) {
      if (log[i]!.start < log[j]!.end && log[j]!.start < log[i]!.end) {
        const shared = log[i]!.ids.filter((id) => log[j]!.ids.includes(id));
        overlaps.push(...shared);
      }
    }
  }
  t.same(overlaps, [], 'no row was in two concurrent bulk requests');
  for (const id of ids.slice(-50)) t.equal(fake.get('listings', id)?.version, await version(db, id), 'latest version indexed');
});

t.test('SIGTERM finishes the batch in flight and exits 0', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  fake.faults.bulkDelayMs = 1500;
  const service = spawnService(t, db, fake.url);
  await service.url;
  const ids = await insertListings(db, 20);
  await eventually(async () => fake.bulkRequests.length > 0 || undefined, { timeoutMs: 20_000 });
  service.child.kill('SIGTERM');
  const exit = await service.exited;
  if (exit.code !== 0) t.comment(service.output().slice(-4000));
  t.same(exit, { code: 0, signal: null }, 'exits 0');
  t.match(service.output(), /stopped cleanly/);
  const states = await db.query(`SELECT state, count(*)::int AS n FROM pgboss.job WHERE singleton_key = ANY ($1) GROUP BY state`, [ids]);
  t.notOk(states.some((s) => s.state === 'active'), 'nothing left active: the batch in flight was settled');
});

