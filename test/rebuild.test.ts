import t, { type Test } from 'tap';
import { findSyncTable } from '../src/config/queues.ts';
import { abortRebuild, rebuildIndex } from '../src/tools/rebuild.ts';
import { runCli } from './helpers/cli.ts';
import { createTestDatabase, eventually, sleep, type TestDatabase } from './helpers/database.ts';
import type { FakeElasticsearch } from './helpers/fake-elasticsearch.ts';
import { fakeSearch } from './helpers/search.ts';
import { startService } from './helpers/service.ts';
import { progressHook, shapeOf, syncedListings, toolDeps } from './helpers/tools.ts';
import { insertListings, waitForIdleQueue } from './sync-scenarios.ts';

const aliasTargets = (fake: FakeElasticsearch, alias = 'listings') => [...(fake.aliases.get(alias) ?? [])].sort();
const rebuildRecords = (db: TestDatabase) => db.query(`SELECT alias, table_name, new_index FROM queue.index_rebuilds`);

/** Every row of the document view has its document, at its version, in `index`; nothing else is there. */
async function indexMatchesRows(db: TestDatabase, fake: FakeElasticsearch, index: string) {
  const rows = await db.query<{ id: string; version: number }>(
    `SELECT d.id, COALESCE(v.version, 0) AS version FROM queue.listings_document d LEFT JOIN queue.listings_version v USING (id)`,
  );
  const documents = fake.documents(index);
  return {
    rows: rows.length,
    documents: documents.size,
    wrong: rows.filter((r) => documents.get(r.id)?.version !== r.version).map((r) => r.id),
  };
}

/** Batches of 200: a backfill of many batches, with live writes all through it. */
const syncedService = (t: Test, rows: number) => syncedListings(t, rows, { SYNC_BATCH_SIZE: '200' });

t.test('a rebuild with live writes swaps to a complete new index; searches never see it empty or half-filled', async (t) => {
  const { fake, db } = await syncedService(t, 1500);
  const initial = fake.count('listings');
  fake.faults.bulkDelayMs = 15; // a backfill that takes a while, with writes all through it

  // What a search through the alias would see, sampled all along.
  const seen = { minimum: Infinity, targets: new Set<string>() };
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      seen.minimum = Math.min(seen.minimum, fake.count('listings'));
      seen.targets.add(aliasTargets(fake).join('+'));
      await sleep(2);
    }
  })();
  let writing = true;
  const written: string[] = [];
  const writer = (async () => {
    while (writing) {
      written.push(...(await insertListings(db, 3, 'during the rebuild')));
      await db.query(`UPDATE listings SET price_cents = price_cents + 1 WHERE id = $1`, [written[Math.floor(Math.random() * written.length)]]);
      await sleep(10);
    }
  })();

  const result = await rebuildIndex({ ...toolDeps(t, db, fake.url), pollIntervalMs: 100 }, await shapeOf(db, 'listings'), { alias: 'listings', batchSize: 250, replaceIndex: false });
  writing = false;
  await writer;
  watching = false;
  await watcher;
  fake.faults.bulkDelayMs = 0;

  t.match(result, { status: 'swapped', newIndex: 'listings_v2', previous: ['listings_v1'], removedIndex: null, resumed: false });
  t.ok(written.length > 30, `${written.length} rows inserted during the rebuild`);
  t.same([...seen.targets], ['listings_v1', 'listings_v2'], 'the alias pointed at one index at every moment: the old one, then the new one');
  t.ok(seen.minimum >= initial, `searches never saw fewer than the ${initial} documents there were before`);
  t.same(aliasTargets(fake), ['listings_v2']);
  t.ok(fake.indices.has('listings_v1'), 'the old index is kept for rollback');
  t.same(await rebuildRecords(db), [], 'live sync is back to writing the alias only');
  t.same(fake.indices.get('listings_v2')?.mappings, findSyncTable('listings')!.mappings, 'the new index has the current mappings, from the template');

  await waitForIdleQueue(db);
  const check = await indexMatchesRows(db, fake, 'listings_v2');
  t.same(check.wrong, [], 'every row, including those written during the rebuild, at its current version');
  t.equal(check.documents, check.rows);
});

t.test('a rebuild stopped halfway stays in progress, live writes reach both indices, and running it again finishes', async (t) => {
  const { fake, db } = await syncedService(t, 600);
  const deps = toolDeps(t, db, fake.url);
  const shape = await shapeOf(db, 'listings');
  const stop = new AbortController();
  const first = await rebuildIndex({ ...deps, progress: progressHook(() => stop.abort()), signal: stop.signal, pollIntervalMs: 100 }, shape, { alias: 'listings', batchSize: 100, replaceIndex: false });
  t.same(first, { status: 'interrupted', table: 'listings', alias: 'listings', newIndex: 'listings_v2' });
  t.same(await rebuildRecords(db), [{ alias: 'listings', table_name: 'listings', new_index: 'listings_v2' }]);
  t.same(aliasTargets(fake), ['listings_v1'], 'searches still use the old index');

  const [id] = await insertListings(db, 1, 'while the rebuild is paused');
  await eventually(async () => fake.get('listings_v1', id!) && fake.get('listings_v2', id!));
  t.pass('a live write reached both the old and the new index');

  const second = await rebuildIndex({ ...deps, pollIntervalMs: 100 }, shape, { alias: 'listings', batchSize: 100, replaceIndex: false });
  t.match(second, { status: 'swapped', newIndex: 'listings_v2', resumed: true });
  t.same(aliasTargets(fake), ['listings_v2']);
  t.same((await indexMatchesRows(db, fake, 'listings_v2')).wrong, []);
});

t.test('--abort drops a rebuild in progress and its index; the alias never moved', async (t) => {
  const { fake, db } = await syncedService(t, 300);
  const deps = toolDeps(t, db, fake.url);
  const stop = new AbortController();
  await rebuildIndex({ ...deps, progress: progressHook(() => stop.abort()), signal: stop.signal }, await shapeOf(db, 'listings'), { alias: 'listings', batchSize: 100, replaceIndex: false });
  t.same(await abortRebuild(deps, 'listings'), { deletedIndex: 'listings_v2' });
  t.notOk(fake.indices.has('listings_v2'));
  t.same(await rebuildRecords(db), []);
  t.same(aliasTargets(fake), ['listings_v1']);
  const [id] = await insertListings(db, 1, 'after the abort');
  await waitForIdleQueue(db);
  t.ok(fake.get('listings', id!), 'sync goes on through the alias');
  await t.rejects(abortRebuild(deps, 'listings'), /no rebuild of listings is in progress: nothing to abort/);
});

t.test('a document Elasticsearch refuses in the new index stops the swap, with the reason', async (t) => {
  const { fake, db } = await syncedService(t, 200);
  const [bad] = await db.query<{ id: string }>(`SELECT id FROM listings ORDER BY id LIMIT 1`);
  fake.faults.item = (item) => (item.index === 'listings_v2' && item.id === bad!.id ? { status: 400, type: 'document_parsing_exception', reason: 'failed to parse field [price_cents]' } : undefined);
  const rebuild = rebuildIndex({ ...toolDeps(t, db, fake.url), pollIntervalMs: 100 }, await shapeOf(db, 'listings'), { alias: 'listings', batchSize: 100, replaceIndex: false });
  await t.rejects(rebuild, /listings_v2 holds 199 documents but queue\.listings_document has 200 rows[\s\S]*queue\.dead_letters[\s\S]*The alias was not swapped and the rebuild stays in progress/);
  t.same(aliasTargets(fake), ['listings_v1'], 'searches keep the complete old index');
  t.equal((await rebuildRecords(db)).length, 1);
});

t.test('with no service running the rebuild stops waiting, says why, and stays resumable', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const service = await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  await service.stop();
  const rebuild = rebuildIndex({ ...toolDeps(t, db, fake.url), stallTimeoutMs: 500, pollIntervalMs: 100 }, await shapeOf(db, 'listings'), { alias: 'listings', batchSize: 100, replaceIndex: false });
  await t.rejects(rebuild, /no job of search-sync\.listings settled for 1 s with 3 still waiting: is queue-service running\?[\s\S]*run reindex --rebuild again to resume/);
  t.same(aliasTargets(fake), ['listings_v1']);
  t.equal((await rebuildRecords(db)).length, 1);
});

t.test('an old concrete index named like the alias: refused without --replace-index, replaced atomically with it', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const client = toolDeps(t, db, fake.url).search;
  await client.indices.create({ index: 'listings' }); // what older sync code created
  await startService(t, db, fake.url);
  await insertListings(db, 50);
  await waitForIdleQueue(db);
  t.equal(fake.count('listings'), 50, 'the service syncs into the concrete index');

  const env = { DATABASE_URL: db.url, ELASTICSEARCH_URL: fake.url };
  const refused = await runCli(['reindex', '--rebuild', '--table', 'listings'], env);
  t.equal(refused.code, 1);
  t.match(refused.stderr, /listings is a concrete index, not an alias[\s\S]*remove_index[\s\S]*Nothing was changed; run reindex --rebuild --replace-index/);
  t.notOk(fake.indices.has('listings_v1'));
  t.same(await rebuildRecords(db), []);

  const run = await runCli(['reindex', '--rebuild', '--replace-index', '--table', 'listings'], env);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /listings: rebuilt into listings_v1 \(53 documents\); the alias now points at it\.\n\s+the concrete index listings was deleted by the swap/);
  t.same(aliasTargets(fake), ['listings_v1']);
  t.notOk(fake.indices.has('listings'), 'the concrete index went in the same request');
  t.equal(fake.count('listings'), 53);
});

t.test('the command line prints how to roll back to the kept index', async (t) => {
  const { fake, db } = await syncedService(t, 20);
  const run = await runCli(['reindex', '--rebuild', '--table', 'listings'], { DATABASE_URL: db.url, ELASTICSEARCH_URL: fake.url });
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /kept for rollback: listings_v1/);
  const request = /POST \/_aliases (\{.*\})/.exec(run.stdout)?.[1];
  t.same(JSON.parse(request!), { actions: [{ add: { index: 'listings_v1', alias: 'listings' } }, { remove: { index: 'listings_v2', alias: 'listings' } }] });
  const client = toolDeps(t, db, fake.url).search;
  await client.indices.updateAliases(JSON.parse(request!));
  t.same(aliasTargets(fake), ['listings_v1'], 'the printed request rolls back');
});
