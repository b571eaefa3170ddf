import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { createTestDatabase, eventually } from './helpers/database.ts';
import { send, waitForJob } from './helpers/jobs.ts';
import { spawnService, startService } from './helpers/service.ts';

// The partner API of the seeds allowed so many requests per window and answered 429 past that.
// This one does the same with a small window, records when each call arrived, and is called by
// two service processes at once.

const LIMIT = 3;
const PERIOD_MS = 1000;
const JOBS = 15;
/** Between a permit and its call's arrival a process adds a few ms of its own; allow for that much. */
const JITTER_MS = 100;
/**
 * Each call takes this long, and each process runs two calls at a time (one job per batch, two
 * batches): when a window opens, one process can take only two of its three permits, so the
 * other always gets calls too.
 */
const CALL_MS = 200;

interface Call {
  at: number;
  path: string;
  authorization: string | undefined;
  idempotencyKey: string | undefined;
  body: unknown;
}

async function partnerApi(t: Test) {
  const calls: Call[] = [];
  let refused = 0;
  const server = createServer(async (req: IncomingMessage, res) => {
    const at = performance.now();
    let body = '';
    for await (const chunk of req) body += chunk;
    const recent = calls.filter((c) => at - c.at < PERIOD_MS - JITTER_MS).length;
    if (recent >= LIMIT) {
      refused++;
      res.writeHead(429, { 'content-type': 'application/json' }).end('{"error":"rate limited"}');
      return;
    }
    calls.push({ at, path: req.url!, authorization: req.headers.authorization, idempotencyKey: req.headers['idempotency-key'] as string | undefined, body: body ? JSON.parse(body) : undefined });
    await new Promise((resolve) => setTimeout(resolve, CALL_MS));
    res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ received: req.url }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/`, calls, refused: () => refused };
}

t.test('two service processes together stay within the rate limit of the external API', async (t) => {
  const api = await partnerApi(t);
  const db = await createTestDatabase(t);
  const env = {
    EXTERNAL_API_URL: api.url,
    EXTERNAL_API_TOKEN: 'partner-token-0123456789',
    QUEUE_OVERRIDES: JSON.stringify({ 'external-api': { rateLimit: { limit: LIMIT, periodSeconds: PERIOD_MS / 1000 }, batchSize: 1, concurrency: 2, pollingIntervalSeconds: 1 } }),
  };
  const services = [spawnService(t, db, null, env), spawnService(t, db, null, env)];
  await Promise.all(services.map((s) => s.url));
  await eventually(async () => services.every((s) => /"queue":"external-api".*"msg":"task queue running"/.test(s.output())), { timeoutMs: 20_000 });

  const started = performance.now();
  for (let i = 0; i < JOBS; i++) await send(db, 'external-api', { method: 'POST', path: `/orders/${i}`, body: { order: i }, idempotencyKey: `order-${i}` });
  await eventually(async () => {
    const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'external-api' AND state = 'completed'`);
    return row!.n === JOBS;
  }, { timeoutMs: 30_000 });
  const elapsed = performance.now() - started;

  t.equal(api.refused(), 0, 'the API never had to refuse a call');
  t.equal(api.calls.length, JOBS, 'every job called once');
  const busiest = Math.max(...api.calls.map((c) => api.calls.filter((d) => d.at >= c.at && d.at - c.at < PERIOD_MS - JITTER_MS).length));
  t.ok(busiest <= LIMIT, `at most ${LIMIT} calls arrived in any ${PERIOD_MS} ms (busiest window: ${busiest})`);
  t.ok(elapsed >= (JOBS / LIMIT - 1) * PERIOD_MS - JITTER_MS, `the limit paced the calls: ${JOBS} took ${Math.round(elapsed)} ms`);

  const perProcess = services.map((s) => [...s.output().matchAll(/"queue":"external-api".*?"completed":(\d+).*?"msg":"batch done"/g)].reduce((sum, m) => sum + Number(m[1]), 0));
  t.equal(perProcess[0]! + perProcess[1]!, JOBS);
  t.ok(perProcess.every((n) => n > 0), `both processes made calls (${perProcess.join(' and ')})`);

  t.same(api.calls.map((c) => c.authorization), Array(JOBS).fill('Bearer partner-token-0123456789'));
  t.same(new Set(api.calls.map((c) => c.path)), new Set(Array.from({ length: JOBS }, (_, i) => `/api/orders/${i}`)));
  const first = api.calls.find((c) => c.path === '/api/orders/0')!;
  t.same([first.idempotencyKey, first.body], ['order-0', { order: 0 }]);
  const [output] = await db.query<{ output: unknown }>(`SELECT output FROM pgboss.job WHERE name = 'external-api' AND data->>'path' = '/orders/0'`);
  t.same(output!.output, { status: 201, body: { received: '/api/orders/0' } }, "the API's answer is the job's output");
});

t.test('a 4xx answer is dead-lettered at once and a 503 is retried', async (t) => {
  let unavailable = 1;
  const server = createServer((req, res) => {
    if (req.url === '/missing') return res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no such order"}');
    if (unavailable-- > 0) return res.writeHead(503).end('busy');
    res.writeHead(200, { 'content-type': 'text/plain' }).end('done');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const db = await createTestDatabase(t);
  await startService(t, db, null, {
    EXTERNAL_API_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    QUEUE_OVERRIDES: JSON.stringify({ 'external-api': { retryDelaySeconds: 1, rateLimit: null } }),
  });
  const missing = await send(db, 'external-api', { method: 'GET', path: '/missing' });
  const dead = await waitForJob(db, missing, ['failed']);
  t.equal(dead.retry_count, 0);
  t.same(dead.output, { status: 404, body: { error: 'no such order' }, error: 'http_status', reason: 'GET /missing answered 404', retryable: false });
  const busy = await send(db, 'external-api', { method: 'PUT', path: '/busy' });
  const done = await waitForJob(db, busy, ['completed'], 20_000);
  t.equal(done.retry_count, 1, 'completed on the retry');
  t.same(done.output, { status: 200, body: 'done' });
});
