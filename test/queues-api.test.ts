// The task queues through the operations surface: each built-in queue end to end through the
// HTTP API and a real worker, and a queue a test adds by one definition showing up in the stats,
// the metrics and the dashboard (Debian's Chromium, headless, driven by playwright-core).
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { SMTPServer } from 'smtp-server';
import t, { type Test } from 'tap';
import type { RunningService, ServiceOptions } from '../src/cli/start.ts';
import { defineTaskQueue, TASK_QUEUES } from '../src/config/task-queues.ts';
import { defineHandler, notRetryable } from '../src/jobs/handler.ts';
import { AUTH, TOKEN } from './helpers/api.ts';
import { createTestDatabase, eventually, type TestDatabase } from './helpers/database.ts';
import { startService } from './helpers/service.ts';

interface Api {
  db: TestDatabase;
  service: RunningService;
  post(body: unknown, url?: string): Promise<{ statusCode: number; body: Record<string, unknown> }>;
  job(id: string): Promise<Record<string, unknown>>;
  /** Waits until the job (read through GET /api/v1/queue/jobs/:id) is in `state`. */
  until(id: string, state: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

async function startApi(t: Test, env: Record<string, string> = {}, options: ServiceOptions = {}): Promise<Api> {
  const db = await createTestDatabase(t, { migrate: false });
  const service = await startService(t, db, null, { API_TOKEN: TOKEN, ...env }, options);
  const job = async (id: string) => (await service.app.inject({ method: 'GET', url: `/api/v1/queue/jobs/${id}`, headers: AUTH })).json() as Record<string, unknown>;
  return {
    db,
    service,
    async post(body, url = '/api/v1/queue/jobs') {
      const response = await service.app.inject({ method: 'POST', url, headers: AUTH, payload: body as object });
      return { statusCode: response.statusCode, body: response.json() as Record<string, unknown> };
    },
    job,
    until: (id, state, timeoutMs = 15_000) => eventually(async () => {
      const current = await job(id);
      return current.state === state ? current : undefined;
    }, { timeoutMs }) as Promise<Record<string, unknown>>,
  };
}

async function listen(server: { listen(port: number, host: string, cb: () => void): unknown }, address: () => AddressInfo | string | null): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (address() as AddressInfo).port;
}

t.test('email through the API: the job is delivered and its output read back; a bad payload is a 400', async (t) => {
  const received: string[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, _session, callback) {
      let raw = '';
      stream.on('data', (c: Buffer) => (raw += c.toString()));
      stream.on('end', () => (received.push(raw), callback()));
    },
  });
  const port = await listen(smtp, () => smtp.server.address());
  t.teardown(() => new Promise<void>((resolve) => smtp.close(() => resolve())));
  const api = await startApi(t, { SMTP_URL: `smtp://127.0.0.1:${port}`, EMAIL_FROM: 'no-reply@shop.example' });

  const refused = await api.post({ queue: 'email', data: { to: ['not-an-address'], template: 'welcome' } });
  t.equal(refused.statusCode, 400);
  t.match(refused.body.message, 'body/data/to/0 must match format "email"');

  const { statusCode, body } = await api.post({ queue: 'email', data: { to: ['ann@example.com'], template: 'listing-sold', data: { title: 'Oak table', price: '$420' } } });
  t.equal(statusCode, 201);
  const job = await api.until(body.id as string, 'completed');
  t.match(job.output, { accepted: ['ann@example.com'], rejected: [] });
  t.match(received[0], /Subject: Sold: Oak table[\s\S]*sold for \$420/);
});

t.test('export through the API: GET /jobs/:id gives the file path and row count', async (t) => {
  const dir = t.testdir();
  const api = await startApi(t, { EXPORT_DIR: dir });
  const { statusCode, body } = await api.post({ queue: 'export', data: { table: 'inventory_items', format: 'ndjson', columns: ['sku', 'quantity'], filter: [{ column: 'quantity', op: 'gte', value: 1 }] } });
  t.equal(statusCode, 201);
  const job = await api.until(body.id as string, 'completed');
  const expected = await api.db.query<{ sku: string; quantity: number }>('SELECT sku, quantity FROM inventory_items WHERE quantity >= 1 ORDER BY id');
  const output = job.output as { path: string; rows: number };
  t.equal(output.path, join(dir, `inventory_items-${body.id}.ndjson`));
  t.equal(output.rows, expected.length);
  t.same((await readFile(output.path, 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l)), expected);
  const bad = await api.post({ queue: 'export', data: { table: 'pg_authid', format: 'csv' } });
  t.equal(bad.statusCode, 400);
  t.match(bad.body.message, /body\/data\/table must be one of "listings", "inventory_items"/);
});

t.test('image-cleanup through the API: the images of the payload are deleted', async (t) => {
  const root = t.testdir({ 'a.png': 'a' });
  const api = await startApi(t, { IMAGE_STORAGE: 'local', IMAGE_STORAGE_DIR: root, IMAGE_BASE_URL: 'https://cdn.shop.example/i/' });
  const { body } = await api.post({ queue: 'image-cleanup', data: { itemId: 'by-hand', imageUrls: ['https://cdn.shop.example/i/a.png'] } });
  const job = await api.until(body.id as string, 'completed');
  t.match(job.output, { itemId: 'by-hand', deleted: ['https://cdn.shop.example/i/a.png'], missing: [], skipped: [] });
  t.notOk(existsSync(join(root, 'a.png')));
});

t.test('external-api through the API: the answer is the output; a 4xx is a dead letter the API lists and replays', async (t) => {
  let status = 422;
  const partner = createHttpServer((_req, res) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ status })));
  const port = await listen(partner, () => partner.address());
  t.teardown(() => new Promise<void>((resolve) => partner.close(() => resolve())));
  const api = await startApi(t, { EXTERNAL_API_URL: `http://127.0.0.1:${port}/v2`, QUEUE_OVERRIDES: JSON.stringify({ 'external-api': { rateLimit: { limit: 10, periodSeconds: 1 } } }) });
  const { body } = await api.post({ queue: 'external-api', data: { method: 'POST', path: '/orders', body: { sku: 'A' } } });
  const failed = await api.until(body.id as string, 'failed');
  t.match(failed, { attempt: 1, error: 'http_status: POST /v2/orders answered 422', deadLetter: 'external-api.dead' });
  const list = await api.service.app.inject({ url: '/api/v1/queue/dead-letters?queue=external-api', headers: AUTH });
  const [dead] = (list.json() as { deadLetters: { id: string; data: unknown; error: string }[] }).deadLetters;
  t.match(dead, { data: { method: 'POST', path: '/orders', body: { sku: 'A' } }, error: 'http_status: POST /v2/orders answered 422' });

  status = 200; // the partner fixed its side; the operator replays
  const replay = await api.post({ queue: 'external-api' }, '/api/v1/queue/dead-letters/replay');
  t.match(replay, { statusCode: 200, body: { queue: 'external-api', replayed: 1, jobsCreated: 1 } });
  const done = await eventually(async () => (await api.db.query<{ output: unknown }>(`SELECT output FROM pgboss.job WHERE name = 'external-api' AND state = 'completed'`))[0]);
  t.same(done!.output, { status: 200, body: { status: 200 } });
  t.equal((await api.db.query(`SELECT 1 FROM pgboss.job WHERE name = 'external-api.dead'`)).length, 0, 'the dead letter is gone');
});

// A queue of the test's own, by one definition and one handler.
const AUDIT_QUEUE = defineTaskQueue<{ event: string }>({
  name: 'audit-log',
  description: 'Writes audit events (a queue a test adds).',
  retryLimit: 0,
  retryDelaySeconds: 1,
  retryBackoff: false,
  expireInSeconds: 30,
  batchSize: 5,
  concurrency: 1,
  pollingIntervalSeconds: 1,
  dataSchema: { type: 'object', required: ['event'], additionalProperties: false, properties: { event: { type: 'string', minLength: 1 } } },
});

const auditHandler = defineHandler(AUDIT_QUEUE, {
  unavailable: () => null,
  start: () => ({
    async run(payload) {
      if (payload.event === 'forbidden') throw notRetryable('forbidden_event', 'forbidden events are not written');
      return { written: payload.event };
    },
  }),
});

function samples(text: string): Map<string, number> {
  return new Map([...text.matchAll(/^(\S+?(?:\{[^}]*\})?) (\S+)$/gm)].filter((m) => !m[1]!.startsWith('#')).map((m) => [m[1]!, Number(m[2])]));
}

t.test('a queue added by one definition appears in the stats, the metrics and the dashboard', async (t) => {
  const api = await startApi(t, {}, { tasks: [...TASK_QUEUES, AUDIT_QUEUE], handlers: [auditHandler] });
  const bad = await api.post({ queue: 'audit-log', data: { event: '' } });
  t.match(bad, { statusCode: 400, body: { message: 'body/data/event must NOT have fewer than 1 characters' } }, 'the API validates against its schema');
  const written = await api.post({ queue: 'audit-log', data: { event: 'signed-in' } });
  const forbidden = await api.post({ queue: 'audit-log', data: { event: 'forbidden' } });
  await api.until(written.body.id as string, 'completed');
  await api.until(forbidden.body.id as string, 'failed');

  const stats = (await api.service.app.inject({ url: '/api/v1/queue/stats', headers: AUTH })).json() as { queues: Record<string, unknown>[] };
  t.match(stats.queues.find((q) => q.queue === 'audit-log'), { kind: 'queue', dead_letter_queue: 'audit-log.dead', completed_last_hour: 1, failed: 1, dead_lettered: 1 });
  t.match(stats.queues.find((q) => q.queue === 'audit-log.dead'), { kind: 'dead-letter', queued: 1 });

  const metrics = samples((await api.service.app.inject({ url: '/metrics' })).body);
  t.equal(metrics.get('queue_service_queue_dead_letters{queue="audit-log"}'), 1);
  t.equal(metrics.get('queue_service_queue_jobs{queue="audit-log",state="failed"}'), 1);
  t.equal(metrics.get('queue_service_jobs_settled_total{queue="audit-log",outcome="completed"}'), 1);
  t.equal(metrics.get('queue_service_jobs_settled_total{queue="audit-log",outcome="dead_lettered"}'), 1);
  t.equal(metrics.get('queue_service_worker_up{queue="audit-log"}'), 1);

  const profile = await mkdtemp(join(tmpdir(), 'qs-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(async () => {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${api.service.url}/dashboard`);
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${api.service.url}/dashboard`);
  const row = page.locator('#queues tr[data-queue="audit-log"]');
  await row.waitFor();
  t.match(await row.innerText(), /audit-log/, 'the dashboard lists the queue');
  const dead = page.locator('#dead-letters tbody tr').filter({ hasText: 'forbidden_event: forbidden events are not written' });
  await dead.waitFor();
  t.match(await dead.innerText(), /audit-log/, 'and its dead letter with the error');
});
