// Operators' tools run while the app writes: reindex, reconcile --repair and migrate-legacy must
// neither lose a write nor leave a stale document behind.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { packageRoot } from '../../src/config/paths.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { fakeSearch } from '../helpers/search.ts';
import { startService } from '../helpers/service.ts';
import { insertListings, waitForIdleQueue } from '../sync-scenarios.ts';
import { converge, report, startWriter, syncExistingRows, writtenRows } from './helpers.ts';

async function syncedService(t: Test, rows: number) {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  await syncExistingRows(db);
  await startService(t, db, fake.url);
  await insertListings(db, rows, 'before');
  await waitForIdleQueue(db);
  return { fake, db, env: { DATABASE_URL: db.url, ELASTICSEARCH_URL: fake.url } };
}

t.test('writes during reindex', async (t) => {
  const { fake, db, env } = await syncedService(t, 10_000);
  const writer = startWriter(db);
  const started = Date.now();
  const run = await runCli(['reindex'], env);
  t.equal(run.code, 0, run.stderr);
  const stats = await writer.stop();
  const { seconds, last } = await converge(db, fake);
  report(t, { scenario: 'writes during reindex', injected: 'reindex of every row while the app writes', faultSeconds: Math.round((Date.now() - started) / 1000), rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});

t.test('writes during reconcile --repair', async (t) => {
  const { fake, db, env } = await syncedService(t, 2000);
  // Drift: documents deleted by hand, one stale, one stray.
  const docs = [...fake.documents('listings').keys()];
  const index = fake.indices.get('listings_v1')!;
  for (const id of docs.slice(0, 20)) index.docs.delete(id);
  index.docs.set(docs[30]!, { version: 1, source: { id: docs[30], title: 'stale by hand' } });
  index.docs.set('00000000-0000-4000-8000-00000000dead', { version: 1, source: { id: 'stray' } });
  const writer = startWriter(db);
  const started = Date.now();
  const run = await runCli(['reconcile', '--repair'], env);
  t.equal(run.code, 1, 'drift found and repaired');
  const stats = await writer.stop();
  const { seconds, last } = await converge(db, fake);
  t.equal((await runCli(['reconcile'], env)).code, 0, 'a second reconcile finds no drift');
  report(t, { scenario: 'writes during reconcile --repair', injected: '20 documents deleted, 1 stale, 1 stray; repaired while the app writes', faultSeconds: Math.round((Date.now() - started) / 1000), rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});

t.test('writes during migrate-legacy', async (t) => {
  const { fake, db, env } = await syncedService(t, 1000);
  await db.query(await readFile(join(packageRoot, 'test/fixtures/legacy.sql'), 'utf8'));
  // The old processor fell behind: rows it never synced, by hand-made drift in the index.
  const pending = (await db.query<{ id: string }>(`SELECT id FROM listings ORDER BY id LIMIT 50`)).map((r) => r.id);
  const index = fake.indices.get('listings_v1')!;
  for (const id of pending) index.docs.delete(id);
  await db.query(`INSERT INTO elasticsearch_sync_queue (table_name, operation, record_id, status) SELECT 'listings', 'UPDATE', id, 'pending' FROM unnest($1::text[]) id`, [pending]);
  const writer = startWriter(db);
  const started = Date.now();
  const run = await runCli(['migrate-legacy'], env);
  t.equal(run.code, 0, run.stderr);
  const stats = await writer.stop();
  const { seconds, last } = await converge(db, fake);
  const [legacy] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE '%elasticsearch_sync'`);
  t.equal(legacy!.n, 0, 'the legacy triggers are gone');
  report(t, { scenario: 'writes during migrate-legacy', injected: '50 pending legacy rows moved while the app writes through both triggers', faultSeconds: Math.round((Date.now() - started) / 1000), rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});
