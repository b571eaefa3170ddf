import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { csvLine } from '../src/jobs/export-rows.ts';
import { createTestDatabase } from './helpers/database.ts';
import { send, waitForJob } from './helpers/jobs.ts';
import { startService } from './helpers/service.ts';

async function setup(t: Test) {
  const dir = t.testdir();
  const db = await createTestDatabase(t);
  await db.query(`INSERT INTO listings (seller_id, title, description, price_cents, status, tags)
                  SELECT gen_random_uuid(), 'Lamp ' || i, CASE WHEN i = 2 THEN 'has "quotes", a comma' || chr(10) || 'and a line' END, i * 100,
                         CASE WHEN i % 2 = 0 THEN 'sold' ELSE 'active' END, ARRAY['t' || i]
                  FROM generate_series(1, 5) i`);
  await startService(t, db, null, { EXPORT_DIR: dir });
  return { db, dir };
}

t.test('an export writes the matching rows as CSV and its output names the file and the row count', async (t) => {
  const { db, dir } = await setup(t);
  const id = await send(db, 'export', {
    table: 'listings',
    format: 'csv',
    columns: ['title', 'description', 'price_cents', 'tags'],
    filter: [{ column: 'title', op: 'like', value: 'Lamp %' }, { column: 'price_cents', op: 'lte', value: 300 }],
  });
  const job = await waitForJob(db, id, ['completed']);
  const path = join(dir, `listings-${id}.csv`);
  t.match(job.output, { path, format: 'csv', table: 'listings', rows: 3 });
  const csv = await readFile(path, 'utf8');
  const expected = await db.query<{ title: string; description: string | null; price_cents: string; tags: string }>(
    `SELECT title, description, price_cents::text, tags::text FROM listings WHERE title LIKE 'Lamp %' AND price_cents <= 300 ORDER BY id`,
  );
  t.equal(csv, csvLine(['title', 'description', 'price_cents', 'tags']) + expected.map((r) => csvLine([r.title, r.description, r.price_cents, r.tags])).join(''));
  t.match(csv, /"has ""quotes"", a comma\nand a line"/, 'quotes, commas and line breaks are quoted');
  t.equal(job.output!.bytes, Buffer.byteLength(csv));
  t.same(await readdir(dir), [`listings-${id}.csv`], 'no partial file is left');
});

t.test('an NDJSON export has one JSON object per matching row', async (t) => {
  const { db, dir } = await setup(t);
  const id = await send(db, 'export', { table: 'listings', format: 'ndjson', filter: [{ column: 'status', op: 'in', value: ['sold'] }, { column: 'description', op: 'eq', value: null }] });
  const job = await waitForJob(db, id, ['completed']);
  const lines = (await readFile(join(dir, `listings-${id}.ndjson`), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l));
  t.equal(job.output!.rows, 1);
  t.match(lines, [{ title: 'Lamp 4', status: 'sold', price_cents: 400, description: null, tags: ['t4'] }]);
});

t.test('a filter on a column the table does not have, or a value it cannot hold, is dead-lettered with the reason', async (t) => {
  const { db, dir } = await setup(t);
  const unknown = await send(db, 'export', { table: 'listings', format: 'csv', filter: [{ column: 'colour', op: 'eq', value: 'red' }] });
  const failed = await waitForJob(db, unknown, ['failed']);
  t.match(failed.output, { error: 'unknown_column', reason: /listings has no column colour \(columns: id, seller_id, title/ });
  t.equal(failed.retry_count, 0);
  const wrongType = await send(db, 'export', { table: 'listings', format: 'csv', filter: [{ column: 'price_cents', op: 'gt', value: 'cheap' }] });
  t.match((await waitForJob(db, wrongType, ['failed'])).output, { error: 'invalid_filter', reason: /does not fit its column: invalid input syntax for type integer: "cheap"/ });
  t.same(await readdir(dir), [], 'no file is left behind');
});
