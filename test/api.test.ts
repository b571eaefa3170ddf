import { randomUUID } from 'node:crypto';
import t from 'tap';
import { failedSyncJob, json, startApi, type Api } from './helpers/api.ts';
import { readEnv } from '../src/config/env.ts';
import { queueConfigs } from '../src/config/queues.ts';

const LISTINGS = 'search-sync.listings';
const DEAD = 'search-sync.listings.dead';
const sync = (id: string) => ({ queue: LISTINGS, data: { table: 'listings', id } });

const waitingJobs = (api: Api, key: string) =>
  api.db.query<{ id: string; state: string }>(`SELECT id, state::text FROM pgboss.job WHERE name = $1 AND singleton_key = $2 AND state < 'active'`, [LISTINGS, key]);

// One service for the whole file: every test works on rows of its own (random ids), so they
// neither see nor disturb each other's jobs.
const api = await startApi(t);
/** Every queue of the registry: search sync, maintenance, the task queues and their dead letters. */
const ALL_QUEUES = queueConfigs(readEnv({})).map((q) => q.name).sort();

t.test('GET /stats returns queue.stats, one row per queue', async (t) => {
  const before = json<{ queues: { queue: string; queued: number }[] }>(await api.call('GET', '/api/v1/queue/stats')).queues.find((q) => q.queue === LISTINGS)!;
  await api.call('POST', '/api/v1/queue/jobs', { body: sync(randomUUID()) });
  await api.call('POST', '/api/v1/queue/jobs', { body: sync(randomUUID()) });
  const response = await api.call('GET', '/api/v1/queue/stats');
  t.equal(response.statusCode, 200);
  const body = json<{ generatedAt: string; queues: Record<string, unknown>[] }>(response);
  t.same(body.queues.map((q) => q.queue).sort(), ALL_QUEUES);
  t.match(body.queues.find((q) => q.queue === LISTINGS), { kind: 'queue', dead_letter_queue: DEAD, queued: before.queued + 2, oldest_waiting_seconds: Number });
  t.ok(Date.parse(body.generatedAt) > 0);
});

t.test('GET /throughput returns every minute of every queue', async (t) => {
  const response = await api.call('GET', '/api/v1/queue/throughput?minutes=3');
  t.equal(response.statusCode, 200);
  const { minutes } = json<{ minutes: { queue: string; minute: string; completed: number }[] }>(response);
  t.equal(minutes.filter((m) => m.queue === LISTINGS).length, 3);
  t.equal(minutes.length, 3 * ALL_QUEUES.length, 'three minutes of each queue');
  t.equal((await api.call('GET', '/api/v1/queue/throughput?minutes=0')).statusCode, 400);
  t.match(json(await api.call('GET', '/api/v1/queue/throughput?minutes=abc')), { message: 'querystring/minutes must be integer' });
});

t.test('POST /jobs enqueues a search-sync job, and a second for the same row joins it like a trigger write', async (t) => {
  const row = randomUUID();
  const first = await api.call('POST', '/api/v1/queue/jobs', { body: sync(row) });
  t.equal(first.statusCode, 201);
  const { id, coalesced } = json<{ id: string; coalesced: boolean }>(first);
  t.equal(coalesced, false);
  const second = await api.call('POST', '/api/v1/queue/jobs', { body: sync(row) });
  t.equal(second.statusCode, 201);
  t.same(json(second), { id, coalesced: true });
  t.same(await waitingJobs(api, row), [{ id, state: 'created' }], 'one job waits for the row');
  const job = json(await api.call('GET', `/api/v1/queue/jobs/${id}`));
  t.match(job, { id, queue: LISTINGS, state: 'created', data: { table: 'listings', id: row }, singletonKey: row, deadLetter: DEAD, attempt: 1 });
});

t.test('POST /jobs with options sends through pg-boss, and refuses a second job for a row that has one waiting', async (t) => {
  const row = randomUUID();
  const response = await api.call('POST', '/api/v1/queue/jobs', { body: { ...sync(row), options: { priority: 5, startAfter: 600, retryLimit: 1 } } });
  t.equal(response.statusCode, 201);
  const { id } = json<{ id: string }>(response);
  const job = json<{ priority: number; retryLimit: number; startAfter: string; singletonKey: string }>(await api.call('GET', `/api/v1/queue/jobs/${id}`));
  t.match(job, { priority: 5, retryLimit: 1, singletonKey: row });
  t.ok(Date.parse(job.startAfter) > Date.now() + 500_000, 'deferred by ten minutes');
  const again = await api.call('POST', '/api/v1/queue/jobs', { body: { ...sync(row), options: { priority: 1 } } });
  t.equal(again.statusCode, 409);
  t.match(json(again), { statusCode: 409, error: 'Conflict', message: `${LISTINGS} already has job ${id} waiting with singleton key "${row}"; it was not replaced (it syncs the row as it is when it runs)` });

  const at = new Date(Date.now() + 3_600_000).toISOString();
  const dated = await api.call('POST', '/api/v1/queue/jobs', { body: { ...sync(randomUUID()), options: { startAfter: at } } });
  t.equal(dated.statusCode, 201);
  const datedJob = json<{ startAfter: string }>(await api.call('GET', `/api/v1/queue/jobs/${json<{ id: string }>(dated).id}`));
  t.equal(datedJob.startAfter, at, 'a date-time start is kept to the millisecond');
});

t.test('POST /jobs into a dead-letter queue takes any object, and DELETE takes it out', async (t) => {
  const response = await api.call('POST', '/api/v1/queue/jobs', { body: { queue: DEAD, data: { note: 'by hand' } } });
  t.equal(response.statusCode, 201);
  const { id } = json<{ id: string }>(response);
  t.match(json(await api.call('GET', `/api/v1/queue/jobs/${id}`)), { queue: DEAD, data: { note: 'by hand' }, state: 'created' });
  t.match(json(await api.call('DELETE', `/api/v1/queue/jobs/${id}`)), { id, state: 'cancelled' });
});

t.test('POST /jobs answers 400 naming the problem with the queue, the data or the options', async (t) => {
  const row = randomUUID();
  const cases: [unknown, string | RegExp][] = [
    [{ queue: 'search-sync.nope', data: {} }, /^body\/queue must be one of "search-sync.listings.dead", .*"search-sync.listings"/],
    [{ data: { table: 'listings', id: row } }, 'body must have property "queue"'],
    [{ queue: LISTINGS }, 'body must have property "data"'],
    [{ queue: LISTINGS, data: { table: 'listings' } }, 'body/data must have property "id"'],
    [{ queue: LISTINGS, data: { table: 'inventory_items', id: row } }, 'body/data/table must be "listings"'],
    [{ queue: LISTINGS, data: { table: 'listings', id: row, title: 'x' } }, 'body/data has unknown property "title"'],
    [{ queue: LISTINGS, data: { table: 'listings', id: 42 } }, 'body/data/id must be string'],
    [{ queue: LISTINGS, data: 'listings' }, 'body/data must be object'],
    [{ queue: LISTINGS, data: { table: 'listings', id: 'not-a-uuid' } }, 'body/data/id must be a key of listings: id "not-a-uuid" is not a uuid'],
    [{ ...sync(row), options: { retryLimt: 3 } }, 'body/options has unknown property "retryLimt"'],
    [{ ...sync(row), options: { priority: '5' } }, 'body/options/priority must be integer'],
    [{ ...sync(row), options: { retryLimit: -1 } }, 'body/options/retryLimit must be >= 0'],
    [{ ...sync(row), options: { startAfter: 'tomorrow' } }, /^body\/options\/startAfter must match format "date-time"/],
    [{ ...sync(row), options: { singletonKey: 'other' } }, `options.singletonKey must be data.id ("${row}") or left out: search-sync jobs are keyed by their row, so two jobs of one row never run at once`],
    [{ ...sync(row), extra: true }, 'body has unknown property "extra"'],
  ];
  for (const [body, message] of cases) {
    const response = await api.call('POST', '/api/v1/queue/jobs', { body });
    t.equal(response.statusCode, 400, JSON.stringify(body));
    t.match(json(response), { statusCode: 400, error: 'Bad Request', message });
  }
  const notJson = await api.call('POST', '/api/v1/queue/jobs', { body: '{"queue":', headers: { 'content-type': 'application/json' } });
  t.equal(notJson.statusCode, 400);
  t.match(json(notJson), { message: /not valid JSON/ });
  t.same(await waitingJobs(api, row), [], 'no job was created by any of them');
});

t.test('GET /jobs lists newest first, filtered by queue and state, a page at a time', async (t) => {
  const { id: deadJob } = json<{ id: string }>(await api.call('POST', '/api/v1/queue/jobs', { body: { queue: 'search-sync.inventory_items.dead', data: { n: 0 } } }));
  const ids: string[] = [];
  for (let i = 1; i <= 5; i++) ids.push(json<{ id: string }>(await api.call('POST', '/api/v1/queue/jobs', { body: { queue: 'search-sync.inventory_items.dead', data: { n: i } } })).id);
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const query: string = `queue=search-sync.inventory_items.dead&state=created&limit=2${cursor ? `&cursor=${cursor}` : ''}`;
    const response = await api.call('GET', `/api/v1/queue/jobs?${query}`);
    t.equal(response.statusCode, 200);
    const body = json<{ jobs: { id: string; queue: string }[]; nextCursor: string | null }>(response);
    t.ok(body.jobs.every((j) => j.queue === 'search-sync.inventory_items.dead'));
    seen.push(...body.jobs.map((j) => j.id));
    cursor = body.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  t.same(seen, [...ids.reverse(), deadJob], 'every job once, newest first');
  t.equal(pages, 3);

  const twoStates = json<{ jobs: { state: string }[] }>(await api.call('GET', `/api/v1/queue/jobs?state=created&state=retry&limit=500`));
  t.ok(twoStates.jobs.length >= 6 && twoStates.jobs.every((j) => ['created', 'retry'].includes(j.state)));
  const none = json<{ jobs: unknown[]; nextCursor: null }>(await api.call('GET', `/api/v1/queue/jobs?queue=${DEAD}&state=completed`));
  t.same(none, { jobs: [], nextCursor: null });

  t.match(json(await api.call('GET', '/api/v1/queue/jobs?state=sleeping')), { statusCode: 400, message: /^querystring\/state\/0 must be one of "created", "retry", "active", "completed", "cancelled", "failed"/ });
  t.match(json(await api.call('GET', '/api/v1/queue/jobs?queue=nope')), { statusCode: 400, message: /^querystring\/queue\/0 must be one of/ });
  t.match(json(await api.call('GET', '/api/v1/queue/jobs?limit=501')), { statusCode: 400, message: 'querystring/limit must be <= 500' });
  t.match(json(await api.call('GET', '/api/v1/queue/jobs?cursor=bm9wZQ')), { statusCode: 400, message: /^cursor is not one this API returned/ });
  t.match(json(await api.call('GET', '/api/v1/queue/jobs?page=2')), { statusCode: 400, message: 'querystring has unknown property "page"' });
});

t.test('GET /jobs/:id answers 404 for an unknown id and 400 for one that is not a uuid', async (t) => {
  const unknown = randomUUID();
  t.match(json(await api.call('GET', `/api/v1/queue/jobs/${unknown}`)), { statusCode: 404, error: 'Not Found', message: `no job with id ${unknown}` });
  t.match(json(await api.call('GET', '/api/v1/queue/jobs/42')), { statusCode: 400, message: 'params/id must match format "uuid"' });
});

t.test('PUT /jobs/:id/retry gives a failed job another attempt and removes its dead-letter copy', async (t) => {
  const row = randomUUID();
  const id = await failedSyncJob(api.service.boss, row);
  t.equal((await api.db.query(`SELECT 1 FROM pgboss.job WHERE name = $1 AND source_id = $2`, [DEAD, id])).length, 1, 'pg-boss dead-lettered it');
  const response = await api.call('PUT', `/api/v1/queue/jobs/${id}/retry`);
  t.equal(response.statusCode, 200);
  t.match(json(response), { id, state: 'retry', retryLimit: 1, error: 'document_parsing_exception: failed to parse field [price_cents]' });
  t.same(await api.db.query(`SELECT 1 FROM pgboss.job WHERE name = $1 AND source_id = $2`, [DEAD, id]), [], 'its dead letter is gone');

  const again = await api.call('PUT', `/api/v1/queue/jobs/${id}/retry`);
  t.equal(again.statusCode, 409);
  t.match(json(again), { message: `job ${id} is retry: only a failed job can be retried (this one is already waiting to retry)` });
  const unknown = randomUUID();
  t.match(json(await api.call('PUT', `/api/v1/queue/jobs/${unknown}/retry`)), { statusCode: 404, message: `no job with id ${unknown}` });
});

t.test('PUT /jobs/:id/retry answers 409 when the row already has a job waiting to retry', async (t) => {
  const row = randomUUID();
  const first = await failedSyncJob(api.service.boss, row);
  const second = await failedSyncJob(api.service.boss, row);
  t.equal((await api.call('PUT', `/api/v1/queue/jobs/${first}/retry`)).statusCode, 200);
  const conflict = await api.call('PUT', `/api/v1/queue/jobs/${second}/retry`);
  t.equal(conflict.statusCode, 409);
  t.match(json(conflict), { message: `${LISTINGS} already has a job with singleton key "${row}" waiting to retry; retry this one after it has run` });
  t.match(json(await api.call('GET', `/api/v1/queue/jobs/${second}`)), { state: 'failed' }, 'the refused job is unchanged');
});

t.test('DELETE /jobs/:id cancels a queued job and refuses one that is not queued', async (t) => {
  const row = randomUUID();
  const { id } = json<{ id: string }>(await api.call('POST', '/api/v1/queue/jobs', { body: sync(row) }));
  const response = await api.call('DELETE', `/api/v1/queue/jobs/${id}`);
  t.equal(response.statusCode, 200);
  t.match(json(response), { id, state: 'cancelled', completedOn: String });
  t.same(await waitingJobs(api, row), []);
  t.match(json(await api.call('DELETE', `/api/v1/queue/jobs/${id}`)), { statusCode: 409, message: `job ${id} is cancelled: only a queued job (created or retry) can be cancelled` });

  const failed = await failedSyncJob(api.service.boss, randomUUID());
  t.match(json(await api.call('DELETE', `/api/v1/queue/jobs/${failed}`)), { statusCode: 409, message: `job ${failed} is failed: only a queued job (created or retry) can be cancelled` });
  const unknown = randomUUID();
  t.equal((await api.call('DELETE', `/api/v1/queue/jobs/${unknown}`)).statusCode, 404);
});

t.test('GET /dead-letters lists dead letters with the queue they came from, their row and error', async (t) => {
  const row = randomUUID();
  const source = await failedSyncJob(api.service.boss, row);
  const response = await api.call('GET', `/api/v1/queue/dead-letters?queue=${LISTINGS}&limit=500`);
  t.equal(response.statusCode, 200);
  const entry = json<{ deadLetters: Record<string, unknown>[] }>(response).deadLetters.find((d) => d.sourceJobId === source);
  t.match(entry, {
    id: String,
    deadLetterQueue: DEAD,
    sourceQueue: LISTINGS,
    data: { table: 'listings', id: row },
    error: 'document_parsing_exception: failed to parse field [price_cents]',
    attempts: 1,
    deadLetteredAt: String,
  });
  const byDeadQueue = json<{ deadLetters: { sourceJobId: string }[] }>(await api.call('GET', `/api/v1/queue/dead-letters?queue=${DEAD}&limit=500`));
  t.ok(byDeadQueue.deadLetters.some((d) => d.sourceJobId === source), 'the dead-letter queue names the same list');
});

t.test('POST /dead-letters/replay sends the given dead letters back as fresh jobs of their rows', async (t) => {
  const row = randomUUID();
  await failedSyncJob(api.service.boss, row);
  const [dead] = await api.db.query<{ id: string }>(`SELECT id FROM pgboss.job WHERE name = $1 AND singleton_key = $2`, [DEAD, row]);
  const response = await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: { queue: LISTINGS, ids: [dead!.id] } });
  t.equal(response.statusCode, 200);
  t.same(json(response), { queue: LISTINGS, deadLetterQueue: DEAD, replayed: 1, replayedIds: [dead!.id], jobsCreated: 1, skippedIds: [], notFoundIds: [] });
  t.match(await waitingJobs(api, row), [{ state: 'created' }], 'the row has a job waiting again');
  t.same(await api.db.query(`SELECT 1 FROM pgboss.job WHERE id = $1`, [dead!.id]), [], 'the dead letter is gone');

  const other = randomUUID();
  await failedSyncJob(api.service.boss, other);
  const [otherDead] = await api.db.query<{ id: string }>(`SELECT id FROM pgboss.job WHERE name = $1 AND singleton_key = $2`, [DEAD, other]);
  const partly = await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: { queue: DEAD, ids: [otherDead!.id, dead!.id] } });
  t.equal(partly.statusCode, 200, 'by the dead-letter queue\'s name too');
  t.match(json(partly), { replayed: 1, replayedIds: [otherDead!.id], notFoundIds: [dead!.id] }, 'an id already replayed is reported, not an error');

  const gone = await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: { queue: DEAD, ids: [dead!.id] } });
  t.equal(gone.statusCode, 404);
  t.match(json(gone), { message: `none of the 1 id(s) is a dead letter waiting in ${DEAD}` });
});

t.test('POST /dead-letters/replay of a whole queue joins rows that already have a job waiting', async (t) => {
  const waiting = randomUUID();
  const lonely = randomUUID();
  await failedSyncJob(api.service.boss, waiting);
  await failedSyncJob(api.service.boss, lonely);
  const { id: waitingJob } = json<{ id: string }>(await api.call('POST', '/api/v1/queue/jobs', { body: sync(waiting) }));
  const response = await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: { queue: LISTINGS } });
  t.equal(response.statusCode, 200);
  const result = json<{ replayed: number; jobsCreated: number }>(response);
  t.ok(result.replayed >= 2);
  t.ok(result.jobsCreated <= result.replayed - 1, 'the row with a waiting job got no second one');
  t.same(await waitingJobs(api, waiting), [{ id: waitingJob, state: 'created' }]);
  t.match(await waitingJobs(api, lonely), [{ state: 'created' }]);
  t.same(await api.db.query(`SELECT 1 FROM pgboss.job WHERE name = $1 AND state < 'active'`, [DEAD]), [], 'the dead-letter queue is empty');
});

t.test('POST /dead-letters/replay answers 400 for a queue without dead letters or a bad id list', async (t) => {
  t.match(json(await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: { queue: 'search-sync.nope' } })), { statusCode: 400, message: /^body\/queue must be one of/ });
  t.match(json(await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: { queue: LISTINGS, ids: [] } })), { statusCode: 400, message: 'body/ids must NOT have fewer than 1 items' });
  t.match(json(await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: { queue: LISTINGS, ids: ['x'] } })), { statusCode: 400, message: 'body/ids/0 must match format "uuid"' });
  t.match(json(await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: {} })), { statusCode: 400, message: 'body must have property "queue"' });
});

t.test('an unknown route answers 404 in the same error shape', async (t) => {
  const response = await api.call('GET', '/api/v1/queue/nothing');
  t.equal(response.statusCode, 404);
  t.same(json(response), { statusCode: 404, error: 'Not Found', message: 'no route GET /api/v1/queue/nothing; the API is described at /docs' });
});

t.test('/docs serves the OpenAPI document of every route', async (t) => {
  const response = await api.call('GET', '/docs/json', { headers: {} });
  t.equal(response.statusCode, 200);
  const doc = json<{ paths: Record<string, Record<string, unknown>> }>(response);
  for (const [path, method] of [
    ['/api/v1/queue/stats', 'get'], ['/api/v1/queue/jobs', 'get'], ['/api/v1/queue/jobs', 'post'], ['/api/v1/queue/jobs/{id}', 'get'],
    ['/api/v1/queue/jobs/{id}/retry', 'put'], ['/api/v1/queue/jobs/{id}', 'delete'], ['/api/v1/queue/dead-letters/replay', 'post'],
    ['/dashboard/', 'get'], ['/health', 'get'], ['/ready', 'get'], ['/metrics', 'get'],
  ] as const) {
    t.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} is documented`);
  }
  t.equal((await api.call('GET', '/docs/', { headers: {} })).statusCode, 200, 'the UI is served');
});
