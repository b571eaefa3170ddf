// The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core, against
// the real service with a fake Elasticsearch that rejects one document.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { packageRoot } from '../src/config/paths.ts';
import { TOKEN } from './helpers/api.ts';
import { createTestDatabase, eventually } from './helpers/database.ts';
import { fakeSearch } from './helpers/search.ts';
import { startService } from './helpers/service.ts';
import { insertListings, waitForIdleQueue } from './sync-scenarios.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function openBrowser(t: Test): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const profile = await mkdtemp(join(tmpdir(), 'qs-chromium-'));
  // launchPersistentContext passes the fresh profile as --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1720, height: 1000 } });
  t.teardown(async () => {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  // A script error or a CSP refusal would show here; the page must run clean.
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  return { context, page, problems };
}

t.test('an operator signs in, sees a dead-lettered job, replays it, retries a failure and cancels a job, each without reloading', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const ids = await insertListings(db, 6, 'dashboard');
  const rejected = ids[2]!;
  fake.faults.item = (item) => (item.id === rejected ? { status: 400, type: 'document_parsing_exception', reason: '[1:87] failed to parse field [price_cents] of type [long]' } : undefined);
  const service = await startService(t, db, fake.url, { API_TOKEN: TOKEN });
  await waitForIdleQueue(db);
  const [dead] = await db.query<{ id: string }>(`SELECT id FROM pgboss.job WHERE name = 'search-sync.listings.dead' AND data->>'id' = $1`, [rejected]);
  t.ok(dead, 'the rejected row was dead-lettered by the worker');
  // A job deferred for an hour, to cancel.
  const deferred = await service.app.inject({
    method: 'POST',
    url: '/api/v1/queue/jobs',
    headers: { authorization: `Bearer ${TOKEN}` },
    payload: { queue: 'search-sync.inventory_items', data: { table: 'inventory_items', id: '5b7e0c1d-2f3a-4b5c-8d9e-000000000001' }, options: { startAfter: 3600 } },
  });
  const deferredId = (deferred.json() as { id: string }).id;

  const { page, problems } = await openBrowser(t);
  await page.goto(`${service.url}/dashboard`);
  await page.getByLabel('API token').fill('not the token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That is not the API token. Try again.').waitFor();
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${service.url}/dashboard`);
  problems.length = 0; // the sign-in page answers 401 until then, which the browser logs

  const queueRow = page.locator('#queues tr[data-queue="search-sync.listings"]');
  await queueRow.waitFor();
  const deadRow = page.locator(`#dead-letters tr[data-job-id="${dead!.id}"]`);
  await deadRow.waitFor();
  t.match(await deadRow.innerText(), new RegExp(`search-sync\\.listings[\\s\\S]*${rejected}[\\s\\S]*document_parsing_exception: \\[1:87\\] failed to parse field \\[price_cents\\]`), 'the dead letter shows its queue, row and error');
  t.match(await queueRow.innerText(), /search-sync\.listings\s+0\s+0\s+0\s+0\s+1\s+1\s+5\s+1/, 'the queue row counts the failure, the dead letter and the synced rows');
  const failedRow = page.locator('#failed tbody tr').filter({ hasText: rejected });
  await failedRow.waitFor();
  const waitingRow = page.locator(`#waiting tr[data-job-id="${deferredId}"]`);
  await waitingRow.waitFor();
  t.equal(await page.locator('#waiting tbody tr').count(), 1, 'dead letters are not listed as waiting jobs');
  await page.screenshot({ path: join(packageRoot, 'docs', 'dashboard.tmp.png'), fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === '1') await page.screenshot({ path: join(packageRoot, 'docs', 'dashboard.png'), fullPage: true });

  // Elasticsearch takes the document now; replaying the dead letter syncs the row as it is.
  fake.faults.item = undefined;
  await deadRow.getByRole('button', { name: 'Replay' }).click();
  await page.getByRole('status').filter({ hasText: 'Replayed 1 dead letter to search-sync.listings: 1 new job.' }).waitFor();
  await deadRow.waitFor({ state: 'detached' });
  t.pass('the dead letter left the list without a reload');
  await eventually(async () => fake.get('listings', rejected)?.source);
  t.pass('and the row reached the index');

  await failedRow.getByRole('button', { name: 'Retry' }).click();
  await page.getByRole('status').filter({ hasText: /is queued to retry \(attempt 2 of 10\)\./ }).waitFor();
  await failedRow.waitFor({ state: 'detached' });
  t.pass('the retried job left the failed list');

  page.once('dialog', (dialog) => void dialog.accept());
  await waitingRow.getByRole('button', { name: 'Cancel' }).click();
  await page.getByRole('status').filter({ hasText: `Job ${deferredId} of search-sync.inventory_items is cancelled.` }).waitFor();
  await waitingRow.waitFor({ state: 'detached' });
  t.pass('the cancelled job left the waiting list');
  t.match(await db.query(`SELECT state::text FROM pgboss.job WHERE id = $1`, [deferredId]), [{ state: 'cancelled' }]);

  t.same(problems, [], 'no script errors and nothing refused by the content security policy');
});
