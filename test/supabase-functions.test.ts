import t, { type Test } from 'tap';
import type pg from 'pg';
import { startBoss } from './helpers/boss.ts';
import { connect, createTestDatabase, type TestDatabase } from './helpers/database.ts';

// queue.send and queue.get_stats are what supabase-js reaches through PostgREST; PostgREST runs each
// request as the role of its key, so these tests run them under those roles.

const LISTING_ID = '8f4c2a9e-1b6d-4c3e-9a7f-000000000001'; // a row of supabase/seed.sql

async function as(t: Test, db: TestDatabase, role: string): Promise<pg.Client> {
  const client = await connect(db.url, role);
  t.teardown(() => client.end());
  return client;
}

const send = (client: pg.Client, queue: string, data: unknown, options: unknown = {}) =>
  client
    .query<{ id: string | null; created: boolean }>('SELECT * FROM queue.send($1, $2, $3)', [queue, JSON.stringify(data), JSON.stringify(options)])
    .then((r) => r.rows[0]!);

const waitingJobs = (db: TestDatabase, queue: string) =>
  db.query<{ id: string; data: unknown; singleton_key: string | null }>(
    `SELECT id, data, singleton_key FROM pgboss.job WHERE name = $1 AND state = 'created' ORDER BY created_on`,
    [queue],
  );

t.test('service_role enqueues a search-sync job for a row, as a trigger would', async (t) => {
  const db = await createTestDatabase(t);
  const client = await as(t, db, 'service_role');
  const result = await send(client, 'search-sync.listings', { table: 'listings', id: LISTING_ID });
  t.equal(result.created, true);
  const jobs = await waitingJobs(db, 'search-sync.listings');
  t.same(jobs, [{ id: result.id, data: { table: 'listings', id: LISTING_ID }, singleton_key: LISTING_ID }]);
});

t.test('a send for a row that already has a waiting job joins it', async (t) => {
  const db = await createTestDatabase(t);
  await db.query(`UPDATE listings SET title = 'renamed' WHERE id = $1`, [LISTING_ID]);
  const [triggered] = await waitingJobs(db, 'search-sync.listings');
  const client = await as(t, db, 'service_role');
  const first = await send(client, 'search-sync.listings', { table: 'listings', id: LISTING_ID });
  const second = await send(client, 'search-sync.listings', { table: 'listings', id: LISTING_ID });
  t.same(first, { id: triggered!.id, created: false });
  t.same(second, { id: triggered!.id, created: false });
  t.equal((await waitingJobs(db, 'search-sync.listings')).length, 1);
});

t.test('a job sent to a standard queue has the columns boss.send gives it with the same options', async (t) => {
  const db = await createTestDatabase(t);
  const boss = await startBoss(t, db.url);
  await boss.createQueue('emails', { retryLimit: 4, retryDelay: 10, expireInSeconds: 120 });
  const options = { priority: 5, retryLimit: 7, retryBackoff: true, singletonKey: 'welcome-42', singletonSeconds: 600, startAfter: 30 };
  const sentId = await boss.send('emails', { to: 'a@example.com' }, options);
  await db.query(`UPDATE pgboss.job SET singleton_key = 'boss' WHERE id = $1`, [sentId]);
  const client = await as(t, db, 'service_role');
  const result = await send(client, 'emails', { to: 'a@example.com' }, options);
  t.equal(result.created, true);
  const rows = await db.query<{ id: string; settings: Record<string, unknown>; delay: number; retention: number }>(
    `SELECT id,
            to_jsonb(j) - '{id,singleton_key,created_on,start_after,keep_until}'::text[] AS settings,
            round(extract(epoch FROM start_after - created_on)) AS delay,
            round(extract(epoch FROM keep_until - start_after)) AS retention
     FROM pgboss.job j WHERE name = 'emails' ORDER BY id = $1`,
    [result.id],
  );
  const [bySend, byRpc] = rows;
  t.same(byRpc!.settings, bySend!.settings, 'data, priority, retry, expiry, policy and dead letter are the same');
  t.same([byRpc!.delay, byRpc!.retention], [bySend!.delay, bySend!.retention]);
  t.same(await send(client, 'emails', { to: 'a@example.com' }, options), { id: null, created: false }, 'a second send in the same singleton slot is refused, as boss.send returns null');
});

t.test('bad input is refused with a message naming what is wrong, and enqueues nothing', async (t) => {
  const db = await createTestDatabase(t);
  const boss = await startBoss(t, db.url);
  await boss.createQueue('emails');
  const client = await as(t, db, 'service_role');
  const listing = { table: 'listings', id: LISTING_ID };
  const cases: [string, string, unknown, unknown, RegExp][] = [
    ['an unknown queue', 'search-sync.nope', listing, {}, /queue "search-sync.nope" does not exist/],
    ['a dead-letter queue', 'search-sync.listings.dead', listing, {}, /"search-sync.listings.dead" is a dead-letter queue/],
    ['data that is not an object', 'emails', [1, 2], {}, /data must be a JSON object, got array/],
    ['sync data for another table', 'search-sync.listings', { table: 'inventory_items', id: LISTING_ID }, {}, /must be \{"table": "listings", "id": "<primary key>"\}/],
    ['sync data with extra fields', 'search-sync.listings', { ...listing, title: 'x' }, {}, /unknown field title/],
    ['sync data without an id', 'search-sync.listings', { table: 'listings' }, {}, /must be \{"table": "listings"/],
    ['options for a sync queue', 'search-sync.listings', listing, { priority: 1 }, /takes no options/],
    ['an unknown option', 'emails', {}, { retries: 3 }, /unknown option retries/],
    ['an option of the wrong type', 'emails', {}, { retryLimit: 'many' }, /invalid option retryLimit/],
    ['a startAfter that is no timestamp', 'emails', {}, { startAfter: 'tomorrow-ish' }, /"tomorrow-ish" is not an ISO timestamp/],
  ];
  for (const [what, queue, data, options, message] of cases) {
    await t.rejects(send(client, queue, data, options), { message }, `refuses ${what}`);
  }
  const [unknown] = await Promise.allSettled([send(client, 'nope', {})]);
  t.match((unknown as PromiseRejectedResult).reason, { code: '42704', hint: /queues: email, emails, export, external-api, image-cleanup, maintenance.reconcile, search-sync.inventory_items, search-sync.listings$/ }, 'the hint lists the queues one can send to');
  const [count] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job`);
  t.equal(count!.n, 0);
});

t.test('service_role reads per-queue counts with get_stats', async (t) => {
  const db = await createTestDatabase(t);
  await db.query(`UPDATE listings SET title = title || '!'`);
  const boss = await startBoss(t, db.url);
  await boss.supervise();
  const client = await as(t, db, 'service_role');
  const { rows } = await client.query(`SELECT queue, policy, dead_letter, queued, active, failed FROM queue.get_stats() WHERE queue ~ '^(search-sync|maintenance)[.]'`);
  t.same(rows, [
    { queue: 'maintenance.reconcile', policy: 'stately', dead_letter: null, queued: 0, active: 0, failed: 0 },
    { queue: 'search-sync.inventory_items', policy: 'stately', dead_letter: 'search-sync.inventory_items.dead', queued: 0, active: 0, failed: 0 },
    { queue: 'search-sync.inventory_items.dead', policy: 'standard', dead_letter: null, queued: 0, active: 0, failed: 0 },
    { queue: 'search-sync.listings', policy: 'stately', dead_letter: 'search-sync.listings.dead', queued: 3, active: 0, failed: 0 },
    { queue: 'search-sync.listings.dead', policy: 'standard', dead_letter: null, queued: 0, active: 0, failed: 0 },
  ]);
});

for (const role of ['anon', 'authenticated']) {
  t.test(`${role} can neither send jobs nor read stats`, async (t) => {
    const db = await createTestDatabase(t);
    const client = await as(t, db, role);
    await t.rejects(send(client, 'search-sync.listings', { table: 'listings', id: LISTING_ID }), { code: '42501' });
    await t.rejects(client.query('SELECT * FROM queue.get_stats()'), { code: '42501' });
    t.equal((await waitingJobs(db, 'search-sync.listings')).length, 0);
  });
}

t.test('service_role gets these two functions and nothing else of the queue', async (t) => {
  const db = await createTestDatabase(t);
  const executable = await db.query<{ fn: string }>(
    `SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
     WHERE p.pronamespace = 'queue'::regnamespace AND has_function_privilege('service_role', p.oid, 'EXECUTE')
     ORDER BY 1`,
  );
  t.same(executable.map((r) => r.fn), ['queue.get_stats()', 'queue.send(text,jsonb,jsonb)'], 'every other function of schema queue is revoked from PUBLIC');
  const client = await as(t, db, 'service_role');
  for (const sql of [
    `SELECT queue.enqueue_sync('listings', ARRAY['x'])`,
    `SELECT queue.wake('search-sync.listings')`,
    'SELECT * FROM queue.migrations',
    'SELECT * FROM queue.listings_document',
    'SELECT * FROM pgboss.job',
  ]) {
    await t.rejects(client.query(sql), { code: '42501' }, sql);
  }
});
