import t from 'tap';
import { connect, createTestDatabase } from './helpers/database.ts';

t.test('a write by authenticated succeeds and enqueues, through SECURITY DEFINER triggers', async (t) => {
  const db = await createTestDatabase(t);
  const client = await connect(db.url, 'authenticated');
  t.teardown(() => client.end());
  const { rows } = await client.query(
    `INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), 'from the app', 500) RETURNING id`,
  );
  await client.query(`UPDATE listings SET title = 'edited by the app' WHERE id = $1`, [rows[0].id]);
  await client.query(`DELETE FROM listings WHERE id = $1`, [rows[0].id]);
  const jobs = await db.query(`SELECT state FROM pgboss.job WHERE singleton_key = $1`, [rows[0].id]);
  t.same(jobs, [{ state: 'created' }]);
});

const forbidden = [
  ['read pg-boss jobs', 'SELECT * FROM pgboss.job LIMIT 1'],
  ['read pg-boss queues', 'SELECT * FROM pgboss.queue LIMIT 1'],
  ['read a document view', 'SELECT * FROM queue.listings_document LIMIT 1'],
  ['read the version table', 'SELECT * FROM queue.listings_version LIMIT 1'],
  ['read held changes', 'SELECT * FROM queue.held_changes LIMIT 1'],
  ['enqueue directly', `SELECT queue.enqueue_sync('listings', ARRAY['x'])`],
  ['call a table enqueue function', `SELECT queue.listings_enqueue(ARRAY['x'])`],
  ['hold changes', `SELECT queue.hold_changes('listings', ARRAY['x'])`],
  ['wake workers', `SELECT queue.wake('search-sync.listings')`],
  ['bump versions', `SELECT queue.bump_versions('public.listings', ARRAY['x'])`],
  ['release held changes', 'SELECT queue.release_held_changes()'],
  ['call a trigger function', 'SELECT queue.listings_changed()'],
  ['call the TRUNCATE trigger function', 'SELECT queue.sync_truncated()'],
  ['build image-cleanup jobs', 'SELECT queue.image_cleanup_job(i) FROM inventory_items i'],
  ['attach the TRUNCATE trigger', `SELECT queue.attach_truncate_sync('public.listings')`],
  ['look up a synced table\'s key', `SELECT queue.primary_key('public.listings')`],
  ['resync rows', `SELECT queue.resync('public.listings', ARRAY['x'], true)`],
  ['move the version clock', 'SELECT queue.advance_document_version(1000000)'],
  ['read or start index rebuilds', 'SELECT * FROM queue.index_rebuilds'],
  ['read saved legacy triggers', 'SELECT * FROM queue.legacy_triggers'],
  ['read reconcile runs', 'SELECT * FROM queue.reconcile_runs'],
  ['read the latest reconcile', 'SELECT * FROM queue.reconcile_latest'],
] as const;

for (const role of ['anon', 'authenticated']) {
  t.test(`${role} can neither read the queue nor call its functions`, async (t) => {
    const db = await createTestDatabase(t);
    const client = await connect(db.url, role);
    t.teardown(() => client.end());
    for (const [what, sql] of forbidden) {
      await t.rejects(client.query(sql), { code: '42501' }, `${role} cannot ${what}`);
    }
  });
}

t.test('every function in schema queue that touches pg-boss is SECURITY DEFINER with a pinned search_path', async (t) => {
  const db = await createTestDatabase(t);
  // attach_sync is the exception: only `migrate` runs it, as the role that owns everything.
  const rows = await db.query<{ proname: string; prosecdef: boolean; proconfig: string[] | null }>(
    `SELECT proname, prosecdef, proconfig FROM pg_proc
     WHERE pronamespace = 'queue'::regnamespace AND proname <> 'attach_sync'
       AND prosrc ~ '(pgboss\\.|queue\\.enqueue_sync|pg_notify)'`,
  );
  t.ok(rows.length >= 5);
  for (const row of rows) {
    t.ok(row.prosecdef, `${row.proname} is SECURITY DEFINER`);
    t.ok(row.proconfig?.includes('search_path=pg_catalog, pg_temp'), `${row.proname} pins search_path`);
  }
});

t.test('queue_monitor reads what reconcile found', async (t) => {
  const db = await createTestDatabase(t);
  const client = await connect(db.url, 'queue_monitor');
  t.teardown(() => client.end());
  t.same((await client.query('SELECT table_name FROM queue.reconcile_latest')).rows, []);
  t.same((await client.query('SELECT id FROM queue.reconcile_runs')).rows, []);
  await t.rejects(client.query('SELECT * FROM queue.index_rebuilds'), { code: '42501' }, 'but not the tools\' own state');
});
