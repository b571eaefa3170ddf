import { readdirSync } from 'node:fs';
import t from 'tap';
import { ConfigError, readEnv } from '../src/config/env.ts';
import { queueConfigs } from '../src/config/queues.ts';
import { defineTaskQueue, EMAIL_QUEUE, EXPORT_QUEUE, EXTERNAL_API_QUEUE, IMAGE_CLEANUP_QUEUE, TASK_QUEUES, type TaskQueue } from '../src/config/task-queues.ts';
import { defineHandler, notRetryable } from '../src/jobs/handler.ts';
import { handlerFile, loadHandler } from '../src/jobs/service.ts';
import { payloadCheck } from '../src/jobs/validate.ts';
import { createTestDatabase, eventually } from './helpers/database.ts';
import { deadLetters, send, waitForJob } from './helpers/jobs.ts';
import { startService } from './helpers/service.ts';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';

// Samples of each built-in payload: queue.send (SQL) and the worker (ajv) must agree on every one.
const SAMPLES: [TaskQueue, unknown, boolean][] = [
  [EMAIL_QUEUE, { to: ['ann@example.com'], template: 'welcome', data: { name: 'Ann' } }, true],
  [EMAIL_QUEUE, { to: ['ann@example.com', 'bo@example.org'], template: 'listing-sold', cc: ['c@example.com'], replyTo: 'r@example.com' }, true],
  [EMAIL_QUEUE, { to: [], template: 'welcome' }, false],
  [EMAIL_QUEUE, { to: ['not an address'], template: 'welcome' }, false],
  [EMAIL_QUEUE, { to: ['a@example.com'], template: '../etc/passwd' }, false],
  [EMAIL_QUEUE, { to: ['a@example.com'], template: 'welcome', data: { nested: { x: 1 } } }, false],
  [EMAIL_QUEUE, { to: ['a@example.com'], template: 'welcome', subject: 'injected' }, false],
  [EXPORT_QUEUE, { table: 'listings', format: 'csv' }, true],
  [EXPORT_QUEUE, { table: 'listings', format: 'ndjson', columns: ['id', 'title'], filter: [{ column: 'status', op: 'in', value: ['active', 'sold'] }, { column: 'price_cents', op: 'gte', value: 100 }], limit: 10 }, true],
  [EXPORT_QUEUE, { table: 'users', format: 'csv' }, false],
  [EXPORT_QUEUE, { table: 'listings', format: 'xml' }, false],
  [EXPORT_QUEUE, { table: 'listings', format: 'csv', columns: ['id', 'id'] }, false],
  [EXPORT_QUEUE, { table: 'listings', format: 'csv', filter: [{ column: 'x; drop table', op: 'eq', value: 1 }] }, false],
  [EXPORT_QUEUE, { table: 'listings', format: 'csv', limit: 1.5 }, false],
  [IMAGE_CLEANUP_QUEUE, { itemId: 'c3d9e1f0-2a4b-4c5d-8e6f-000000000001', sku: 'A', imageUrls: ['https://cdn.example.com/a.jpg'] }, true],
  [IMAGE_CLEANUP_QUEUE, { itemId: 'x', imageUrls: [] }, false],
  [EXTERNAL_API_QUEUE, { method: 'POST', path: '/v1/orders', body: { id: 1, lines: [1, 2] }, idempotencyKey: 'order-1' }, true],
  [EXTERNAL_API_QUEUE, { method: 'GET', path: '/v1/orders', query: { page: '2' } }, true],
  [EXTERNAL_API_QUEUE, { method: 'GET', path: 'https://evil.example.com/' }, false],
  [EXTERNAL_API_QUEUE, { method: 'TRACE', path: '/x' }, false],
  [EXTERNAL_API_QUEUE, { method: 'GET', path: '/x', headers: { authorization: 'mine' } }, false],
];

t.test('queue.send and the worker agree on which payloads each queue accepts', async (t) => {
  const db = await createTestDatabase(t);
  for (const [queue, payload, valid] of SAMPLES) {
    const workerSays = payloadCheck(queue.dataSchema)(payload);
    const [sql] = await db.query<{ errors: string[] }>('SELECT queue.schema_errors(data_schema, $2::jsonb) AS errors FROM queue.task_queues WHERE name = $1', [queue.name, JSON.stringify(payload)]);
    t.equal(workerSays === null, valid, `worker: ${queue.name} ${JSON.stringify(payload)} ${workerSays ?? ''}`);
    t.equal(sql!.errors.length === 0, valid, `queue.send: ${queue.name} ${JSON.stringify(payload)} ${sql!.errors.join('; ')}`);
  }
});

t.test('a payload the schema refuses is refused at enqueue, naming every problem, and nothing is queued', async (t) => {
  const db = await createTestDatabase(t);
  await t.rejects(send(db, 'email', { to: ['nope'], template: 'Welcome', priority: 1 }), {
    code: '22023',
    message: 'queue-service: email refuses this payload: data has unknown property "priority"; data/template must match pattern "^[a-z0-9][a-z0-9_-]{0,63}$"; data/to/0 must match format "email"',
  });
  const [count] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'email'`);
  t.equal(count!.n, 0);
});

t.test('a definition the config cannot honour is refused, naming the queue and the problem', async (t) => {
  const env = readEnv({});
  const bad = defineTaskQueue({ ...EMAIL_QUEUE, name: 'search-sync.sneaky', dataSchema: { type: 'object', properties: { a: { oneOf: [{ type: 'string' }] } } } });
  const err = t.throws(() => queueConfigs(env, [bad, EMAIL_QUEUE, EMAIL_QUEUE])) as ConfigError;
  t.type(err, ConfigError);
  t.match(err.problems, [/"search-sync.sneaky": a name is/, /"oneOf" at #\/properties\/a, which queue.send cannot check/, /task queue "email" is defined twice/]);
  t.throws(() => queueConfigs(readEnv({ QUEUE_OVERRIDES: '{"email":{"rateLimit":{"limit":0}},"export":{"retries":1}}' })), {
    message: /QUEUE_OVERRIDES\["email"\].rateLimit must be \{"limit"[\s\S]*QUEUE_OVERRIDES\["export"\].retries is not a setting/,
  });
});

t.test('every built-in queue has its handler file, serving that queue', async (t) => {
  const files = readdirSync(dirname(fileURLToPath(handlerFile('email')))).sort();
  t.same(files, TASK_QUEUES.map((q) => `${q.name}.ts`).sort(), 'one handler file per queue, named after it');
  for (const queue of TASK_QUEUES) t.equal((await loadHandler(queue.name))?.queue, queue.name);
});

// A queue of the test's own: one definition and one handler, nothing else.
interface GreetPayload {
  name: string;
  mood?: 'fine' | 'cursed' | 'flaky';
}

const GREET_QUEUE = defineTaskQueue<GreetPayload>({
  name: 'greet',
  description: 'Says hello (a queue defined by a test).',
  retryLimit: 1,
  retryDelaySeconds: 1,
  retryBackoff: false,
  expireInSeconds: 30,
  batchSize: 3,
  concurrency: 1,
  pollingIntervalSeconds: 1,
  dataSchema: {
    type: 'object',
    required: ['name'],
    additionalProperties: false,
    properties: { name: { type: 'string', minLength: 1 }, mood: { type: 'string', enum: ['fine', 'cursed', 'flaky'] } },
  },
});

function greetHandler(attempts: Map<string, number>) {
  return defineHandler(GREET_QUEUE, {
    unavailable: () => null,
    start: () => ({
      async run(payload, job) {
        attempts.set(payload.name, (attempts.get(payload.name) ?? 0) + 1);
        if (payload.mood === 'cursed') throw notRetryable('cursed', `${payload.name} cannot be greeted`, { hint: 'no retry helps' });
        if (payload.mood === 'flaky' && job.attempt === 1) throw new Error('try again');
        return { greeting: `hello ${payload.name}`, attempt: job.attempt };
      },
    }),
  });
}

t.test('a queue added by one definition and one handler is created by migrate and runs its jobs', async (t) => {
  const db = await createTestDatabase(t, { migrate: false });
  const attempts = new Map<string, number>();
  await startService(t, db, null, {}, { tasks: [...TASK_QUEUES, GREET_QUEUE], handlers: [greetHandler(attempts)] });
  const [queue] = await db.query('SELECT name, dead_letter, retry_limit FROM pgboss.queue WHERE name = $1', ['greet']);
  t.same(queue, { name: 'greet', dead_letter: 'greet.dead', retry_limit: 1 });

  const fine = await send(db, 'greet', { name: 'Ann' });
  const done = await waitForJob(db, fine, ['completed']);
  t.same(done.output, { greeting: 'hello Ann', attempt: 1 }, "the handler's result is the job's output");

  const flaky = await send(db, 'greet', { name: 'Bo', mood: 'flaky' });
  t.same((await waitForJob(db, flaky, ['completed'])).output, { greeting: 'hello Bo', attempt: 2 }, 'a plain error is retried');

  const cursed = await send(db, 'greet', { name: 'Cy', mood: 'cursed' });
  const failed = await waitForJob(db, cursed, ['failed']);
  t.equal(failed.retry_count, 0, 'a not-retryable error is not retried');
  t.equal(attempts.get('Cy'), 1);
  const dead = await eventually(async () => (await deadLetters(db, 'greet')).find((d) => d.data.name === 'Cy'));
  t.match(dead!.source_output, { error: 'cursed', reason: 'Cy cannot be greeted', hint: 'no retry helps', retryable: false }, 'it waits in greet.dead with its error');
});

t.test('a payload that reaches a worker invalid is dead-lettered with the validation error, never handled', async (t) => {
  const db = await createTestDatabase(t, { migrate: false });
  const attempts = new Map<string, number>();
  const service = await startService(t, db, null, {}, { tasks: [...TASK_QUEUES, GREET_QUEUE], handlers: [greetHandler(attempts)] });
  // pg-boss's own send skips queue.send's check, as a job written by hand or by older code would.
  const id = (await service.boss.send('greet', { name: '', shout: true }))!;
  const job = await waitForJob(db, id, ['failed']);
  t.same(job.output, { error: 'invalid_job_data', reason: 'data has unknown property "shout"; data/name must NOT have fewer than 1 characters' });
  t.equal(job.retry_count, 0);
  t.equal(attempts.size, 0, 'the handler never saw it');
  t.equal((await deadLetters(db, 'greet')).length, 1);
});

t.test('a queue whose configuration is missing claims nothing, and /ready and the log say why', async (t) => {
  const db = await createTestDatabase(t);
  const service = await startService(t, db, null);
  const id = await send(db, 'email', { to: ['ann@example.com'], template: 'welcome', data: { name: 'Ann' } });
  const ready = await service.app.inject({ method: 'GET', url: '/ready' });
  const queues = ready.json().checks.queues;
  t.equal(queues.ok, true, 'a paused queue does not fail readiness');
  t.match(queues.detail, /email: SMTP_URL is not set: email jobs wait until it is/);
  t.match(queues.states, [{ queue: 'email', status: 'paused' }, { queue: 'export', status: 'paused' }, { queue: 'image-cleanup', status: 'paused' }, { queue: 'external-api', status: 'paused' }]);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const [job] = await db.query<{ state: string }>('SELECT state::text FROM pgboss.job WHERE id = $1', [id]);
  t.equal(job!.state, 'created', 'the job waits');
});
