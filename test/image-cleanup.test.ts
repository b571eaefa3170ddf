import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { createSupabaseStorage } from '../src/jobs/storage.ts';
import { connect, createTestDatabase, eventually } from './helpers/database.ts';
import { waitForJob } from './helpers/jobs.ts';
import { startService } from './helpers/service.ts';

const BASE = 'https://cdn.shop.example/images/';

t.test('deleting inventory items deletes their images from the local folder, and nothing else', async (t) => {
  const root = t.testdir({ images: { items: { 'a.jpg': 'a', 'b b.jpg': 'b' } }, 'secret.txt': 'keep me' });
  const dir = join(root, 'images');
  const db = await createTestDatabase(t);
  await startService(t, db, null, { IMAGE_STORAGE: 'local', IMAGE_STORAGE_DIR: dir, IMAGE_BASE_URL: BASE });
  const [item] = await db.query<{ id: string }>(
    `UPDATE inventory_items SET image_urls = $1 WHERE sku = 'TBL-OAK-180' RETURNING id`,
    [[`${BASE}items/a.jpg`, `${BASE}items/b%20b.jpg`, `${BASE}items/never-uploaded.jpg`, 'https://elsewhere.example/x.jpg', `${BASE}../secret.txt`]],
  );
  await db.query(`UPDATE inventory_items SET image_urls = '{}' WHERE id <> $1`, [item!.id]);

  await db.query(`DELETE FROM inventory_items`);
  const jobs = await db.query<{ id: string; data: unknown }>(`SELECT id, data FROM pgboss.job WHERE name = 'image-cleanup'`);
  t.equal(jobs.length, 1, 'one job for the one deleted item that had images');
  const job = await waitForJob(db, jobs[0]!.id, ['completed']);
  t.same(job.output, {
    itemId: item!.id,
    deleted: [`${BASE}items/a.jpg`, `${BASE}items/b%20b.jpg`],
    missing: [`${BASE}items/never-uploaded.jpg`],
    skipped: [
      { url: 'https://elsewhere.example/x.jpg', reason: 'not under IMAGE_BASE_URL' },
      { url: `${BASE}../secret.txt`, reason: 'outside IMAGE_STORAGE_DIR' },
    ],
  });
  t.notOk(existsSync(join(dir, 'items', 'a.jpg')));
  t.notOk(existsSync(join(dir, 'items', 'b b.jpg')));
  t.ok(existsSync(join(root, 'secret.txt')), 'a URL that climbs out of the folder deletes nothing');
});

t.test("an app user's delete (authenticated, under RLS) enqueues the cleanup, though the role can touch no queue object", async (t) => {
  const db = await createTestDatabase(t);
  await db.query(`UPDATE inventory_items SET image_urls = '{https://cdn.shop.example/images/u.jpg}' WHERE sku = 'TBL-OAK-180'`);
  const client = await connect(db.url, 'authenticated');
  t.teardown(() => client.end());
  await client.query(`DELETE FROM inventory_items WHERE sku = 'TBL-OAK-180'`);
  await t.rejects(client.query(`SELECT queue.enqueue_jobs('image-cleanup', ARRAY['{}'::jsonb])`), { code: '42501' });
  const jobs = await db.query<{ data: unknown }>(`SELECT data FROM pgboss.job WHERE name = 'image-cleanup'`);
  t.match(jobs, [{ data: { sku: 'TBL-OAK-180', imageUrls: ['https://cdn.shop.example/images/u.jpg'] } }]);
});

t.test('a TRUNCATE of inventory items enqueues the cleanup of every item that had images, as a delete does', async (t) => {
  const db = await createTestDatabase(t);
  await db.query(`UPDATE inventory_items SET image_urls = '{}'`);
  await db.query(`UPDATE inventory_items SET image_urls = '{https://cdn.shop.example/images/t.jpg,""}' WHERE sku = 'TBL-OAK-180'`);
  await db.query('TRUNCATE inventory_items');
  const jobs = await db.query<{ data: unknown }>(`SELECT data FROM pgboss.job WHERE name = 'image-cleanup'`);
  t.match(jobs, [{ data: { sku: 'TBL-OAK-180', imageUrls: ['https://cdn.shop.example/images/t.jpg'] } }]);
  t.equal(jobs.length, 1, 'items without images need no cleanup');
});

t.test('a delete that rolls back enqueues no cleanup', async (t) => {
  const db = await createTestDatabase(t);
  await db.query(`UPDATE inventory_items SET image_urls = '{https://cdn.shop.example/images/x.jpg}'`);
  const client = await db.pool.connect();
  await client.query('BEGIN');
  await client.query('DELETE FROM inventory_items');
  await client.query('ROLLBACK');
  client.release();
  const [count] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'image-cleanup'`);
  t.equal(count!.n, 0);
});

t.test('an image that cannot be deleted yet is retried, and the retry deletes it', async (t) => {
  const root = t.testdir();
  const dir = join(root, 'images');
  const db = await createTestDatabase(t);
  await startService(t, db, null, {
    IMAGE_STORAGE: 'local',
    IMAGE_STORAGE_DIR: dir,
    IMAGE_BASE_URL: BASE,
    QUEUE_OVERRIDES: JSON.stringify({ 'image-cleanup': { retryDelaySeconds: 1 } }),
  });
  // A directory where the image should be: unlink fails with EISDIR (or EPERM), not ENOENT.
  await mkdir(join(dir, 'stuck.jpg'), { recursive: true });
  await db.query(`UPDATE inventory_items SET image_urls = $1 WHERE sku = 'TBL-OAK-180'`, [[`${BASE}stuck.jpg`]]);
  await db.query(`DELETE FROM inventory_items WHERE sku = 'TBL-OAK-180'`);
  const [{ id }] = (await db.query<{ id: string }>(`SELECT id FROM pgboss.job WHERE name = 'image-cleanup'`)) as [{ id: string }];
  const retrying = await waitForJob(db, id, ['retry']);
  t.match(retrying.output, { error: 'storage_failed', retryable: true });
  await import('node:fs/promises').then((fs) => fs.rm(join(dir, 'stuck.jpg'), { recursive: true }));
  await writeFile(join(dir, 'stuck.jpg'), 'now a file');
  const done = await waitForJob(db, id, ['completed'], 20_000);
  t.match(done.output, { deleted: [`${BASE}stuck.jpg`] });
});

// supabase-js against a recording fetch: the requests are what Supabase Storage would receive,
// and the answer is its own shape (the removed objects).
function recordingFetch(answer: (body: { prefixes: string[] }) => Response) {
  const requests: { method: string; url: string; headers: Record<string, string>; body: { prefixes: string[] } }[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => (headers[name] = value));
    const body = JSON.parse(await request.text()) as { prefixes: string[] };
    requests.push({ method: request.method, url: request.url, headers, body });
    return answer(body);
  };
  return { fetch, requests };
}

const SUPABASE = 'https://project-ref.supabase.test';

t.test('the Supabase Storage adapter removes the bucket objects of the URLs with one request', async (t) => {
  const recorder = recordingFetch((body) =>
    Response.json(body.prefixes.filter((p) => !p.includes('gone')).map((name) => ({ name, bucket_id: 'images', id: name }))),
  );
  const storage = createSupabaseStorage({ url: SUPABASE, serviceRoleKey: 'service-role-key', bucket: 'images', fetch: recorder.fetch });
  const result = await storage.remove([
    `${SUPABASE}/storage/v1/object/public/images/items/1/front%20view.jpg`,
    `${SUPABASE}/storage/v1/object/sign/images/items/1/back.jpg?token=abc`,
    `${SUPABASE}/storage/v1/object/public/images/items/1/gone.jpg`,
    `${SUPABASE}/storage/v1/object/public/avatars/users/7.png`,
    'https://cdn.elsewhere.example/items/1.jpg',
  ]);
  t.equal(recorder.requests.length, 1);
  const [request] = recorder.requests;
  t.equal(request!.method, 'DELETE');
  t.equal(request!.url, `${SUPABASE}/storage/v1/object/images`);
  t.equal(request!.headers.authorization, 'Bearer service-role-key');
  t.same(request!.body, { prefixes: ['items/1/front view.jpg', 'items/1/back.jpg', 'items/1/gone.jpg'] });
  t.same(result, {
    deleted: [`${SUPABASE}/storage/v1/object/public/images/items/1/front%20view.jpg`, `${SUPABASE}/storage/v1/object/sign/images/items/1/back.jpg?token=abc`],
    missing: [`${SUPABASE}/storage/v1/object/public/images/items/1/gone.jpg`],
    skipped: [
      { url: `${SUPABASE}/storage/v1/object/public/avatars/users/7.png`, reason: 'in bucket avatars, not IMAGE_STORAGE_BUCKET images' },
      { url: 'https://cdn.elsewhere.example/items/1.jpg', reason: 'not on SUPABASE_URL' },
    ],
  });
});

t.test('a Storage error is retryable and names the cause', async (t) => {
  const recorder = recordingFetch(() => Response.json({ statusCode: '403', error: 'Unauthorized', message: 'invalid signature' }, { status: 403 }));
  const storage = createSupabaseStorage({ url: SUPABASE, serviceRoleKey: 'wrong-key', bucket: 'images', fetch: recorder.fetch });
  await t.rejects(storage.remove([`${SUPABASE}/storage/v1/object/public/images/a.jpg`]), { code: 'storage_failed', retryable: true, message: /Supabase Storage refused the delete: invalid signature/ });
});

t.test('with no image storage configured, cleanup jobs wait', async (t) => {
  const db = await createTestDatabase(t);
  const service = await startService(t, db, null);
  await db.query(`UPDATE inventory_items SET image_urls = '{https://cdn.shop.example/images/x.jpg}'`);
  await db.query('DELETE FROM inventory_items');
  await eventually(async () => (await service.app.inject({ url: '/ready' })).json().checks.queues.detail.includes('image-cleanup: IMAGE_STORAGE is not set'));
  await new Promise((resolve) => setTimeout(resolve, 1200));
  const states = await db.query<{ state: string }>(`SELECT state::text FROM pgboss.job WHERE name = 'image-cleanup'`);
  t.ok(states.length > 0 && states.every((s) => s.state === 'created'));
});
