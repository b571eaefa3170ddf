// Sync scenarios that hold against any Elasticsearch: run on the fake by sync.test.ts and on a
// real cluster by sync-real-es.test.ts when ELASTICSEARCH_URL is set.
import type { Test } from 'tap';
import { createSearchClient } from '../src/search/client.ts';
import { sendBulk } from '../src/search/bulk.ts';
import { createTestDatabase, eventually, type TestDatabase } from './helpers/database.ts';
import type { SearchBackend } from './helpers/search.ts';
import { startService } from './helpers/service.ts';

export async function insertListings(db: TestDatabase, count: number, title = 'listing'): Promise<string[]> {
  const rows = await db.query<{ id: string }>(
    `INSERT INTO listings (seller_id, title, price_cents)
     SELECT gen_random_uuid(), $2 || ' ' || i, i FROM generate_series(1, $1::int) i RETURNING id`,
    [count, title],
  );
  return rows.map((r) => r.id);
}

/** A listing's document version, or undefined when it has none. */
export const versionOf = async (db: TestDatabase, id: string) =>
  (await db.query<{ version: number }>(`SELECT version FROM queue.listings_version WHERE id = $1`, [id]))[0]?.version;

/** A listing's document version as the worker reads it: a row with none is at version 0. */
export const version = async (db: TestDatabase, id: string) => (await versionOf(db, id)) ?? 0;

export const waitForIdleQueue = (db: TestDatabase, timeoutMs = 30_000) =>
  eventually(async () => {
    const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name LIKE 'search-sync.%' AND state < 'completed' AND name NOT LIKE '%.dead'`);
    return row?.n === 0;
  }, { timeoutMs });

export interface Scenario {
  name: string;
  run(t: Test, search: SearchBackend): Promise<void>;
}

async function setup(t: Test, search: SearchBackend) {
  const db = await createTestDatabase(t);
  await startService(t, db, search.url, { INDEX_PREFIX: search.prefix });
  return db;
}

export const scenarios: Scenario[] = [
  {
    name: 'an insert, an update and a delete each reach the index',
    async run(t, search) {
      const db = await setup(t, search);
      const [id] = await insertListings(db, 1, 'first title');
      await eventually(async () => (await search.doc('listings', id!))?.source.title === 'first title 1');
      await db.query(`UPDATE listings SET title = 'second title' WHERE id = $1`, [id]);
      const updated = (await eventually(async () => {
        const doc = await search.doc('listings', id!);
        return doc?.source.title === 'second title' ? doc : undefined;
      }))!;
      t.equal(updated.version, await version(db, id!), 'indexed with the row version');
      t.equal(updated.source.id, id, 'the document carries its id');
      await db.query(`DELETE FROM listings WHERE id = $1`, [id]);
      await eventually(async () => (await search.doc('listings', id!)) === undefined);
      t.pass('deleted from the index');
    },
  },
  {
    name: 'an id deleted and then inserted again is back in the index, above its tombstone',
    async run(t, search) {
      const db = await setup(t, search);
      const [id] = await insertListings(db, 1, 'before');
      await eventually(async () => (await search.doc('listings', id!))?.source.title === 'before 1');
      await db.query(`DELETE FROM listings WHERE id = $1`, [id]);
      await eventually(async () => (await search.doc('listings', id!)) === undefined);
      await db.query(`INSERT INTO listings (id, seller_id, title, price_cents) VALUES ($1, gen_random_uuid(), 'after', 1)`, [id]);
      const back = await eventually(async () => {
        const doc = await search.doc('listings', id!);
        return doc?.source.title === 'after' ? doc : undefined;
      });
      t.equal(back!.version, await version(db, id!), 'indexed with the version above the delete');
    },
  },
  {
    name: 'a TRUNCATE empties the index of the table and of the tables it cascades to',
    async run(t, search) {
      const db = await setup(t, search);
      await insertListings(db, 50, 'to be truncated');
      await db.query(`UPDATE inventory_items SET quantity = quantity + 1`);
      await waitForIdleQueue(db);
      t.equal(await search.count('listings'), 50);
      t.ok((await search.count('inventory_items')) > 0, 'the seed items are indexed');
      await db.query('TRUNCATE listings CASCADE');
      await waitForIdleQueue(db);
      t.same([await search.count('listings'), await search.count('inventory_items')], [0, 0]);
      const [dead] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name LIKE '%.dead'`);
      t.equal(dead!.n, 0, 'nothing dead-lettered');
    },
  },
  {
    name: 'a 5,000-row statement reaches the index',
    async run(t, search) {
      const db = await setup(t, search);
      await insertListings(db, 5000, 'bulk');
      await waitForIdleQueue(db, 60_000);
      t.equal(await search.count('listings'), 5000, 'every row (the seed rows predate the triggers)');
    },
  },
  {
    name: 'a 200-update burst to one row ends with its last state',
    async run(t, search) {
      const db = await setup(t, search);
      const [id] = await insertListings(db, 1);
      for (let i = 1; i <= 200; i++) await db.query(`UPDATE listings SET price_cents = $2 WHERE id = $1`, [id, i]);
      await waitForIdleQueue(db);
      const doc = await search.doc('listings', id!);
      t.equal(doc?.source.price_cents, 200);
      t.equal(doc?.version, await version(db, id!));
      const [jobs] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE singleton_key = $1`, [id]);
      t.ok(jobs!.n < 50, `200 updates coalesced into ${jobs!.n} jobs`);
    },
  },
  {
    name: 'a stale write after a newer one, or after a delete, is refused',
    async run(t, search) {
      const db = await setup(t, search);
      const [id] = await insertListings(db, 1, 'old');
      await waitForIdleQueue(db);
      const stale = { id: id!, version: await version(db, id!), source: { id, title: 'stale state' } };
      await db.query(`UPDATE listings SET title = 'new' WHERE id = $1`, [id]);
      await waitForIdleQueue(db);
      const client = createSearchClient({ url: search.url, requestTimeoutMs: 5000 });
      t.teardown(() => client.close());
      const alias = `${search.prefix}listings`;
      const afterUpdate = await sendBulk(client, [stale], [alias]);
      t.same(afterUpdate.outcomes.get(id!), { kind: 'done', result: 'superseded' }, 'refused as older than the index');
      t.equal((await search.doc('listings', id!))?.source.title, 'new');
      await db.query(`DELETE FROM listings WHERE id = $1`, [id]);
      await waitForIdleQueue(db);
      await sendBulk(client, [stale], [alias]);
      t.equal(await search.doc('listings', id!), undefined, 'the delete is not undone');
    },
  },
  {
    name: 'a document whose version the index already holds counts as done (409)',
    async run(t, search) {
      const db = await setup(t, search);
      const [id] = await insertListings(db, 1);
      await waitForIdleQueue(db);
      const client = createSearchClient({ url: search.url, requestTimeoutMs: 5000 });
      t.teardown(() => client.close());
      await client.index({ index: `${search.prefix}listings`, id: id!, version: 1_000_000_000, version_type: 'external', document: { id, title: 'from the future' }, refresh: true });
      await db.query(`UPDATE listings SET title = 'older than the index' WHERE id = $1`, [id]);
      await waitForIdleQueue(db);
      const [job] = await db.query(`SELECT state, output FROM pgboss.job WHERE singleton_key = $1 ORDER BY created_on DESC LIMIT 1`, [id]);
      t.same(job, { state: 'completed', output: { result: 'superseded' } });
    },
  },
];
