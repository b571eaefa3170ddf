import { randomUUID } from 'node:crypto';
import t from 'tap';
import { Metrics } from '../src/sync/metrics.ts';
import { failedSyncJob, startApi } from './helpers/api.ts';
import { createTestDatabase, eventually } from './helpers/database.ts';
import { fakeSearch } from './helpers/search.ts';
import { startService } from './helpers/service.ts';
import { insertListings, waitForIdleQueue } from './sync-scenarios.ts';

/** The samples of a Prometheus text exposition, keyed `name{labels}`. */
function samples(text: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^(\S+?(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) result.set(match[1]!, Number(match[2]));
  }
  return result;
}

function types(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

t.test('each scrape reads the jobs per queue and state, the dead letters and the oldest waiting job from the database', async (t) => {
  const api = await startApi(t);
  for (let i = 0; i < 3; i++) {
    await api.call('POST', '/api/v1/queue/jobs', { body: { queue: 'search-sync.listings', data: { table: 'listings', id: randomUUID() } } });
  }
  await failedSyncJob(api.service.boss, randomUUID());
  const response = await api.call('GET', '/metrics', { headers: { authorization: '' } });
  t.equal(response.statusCode, 200);
  t.match(response.headers['content-type'], /^text\/plain; version=0.0.4/);
  const values = samples(response.body);
  t.equal(values.get('queue_service_queue_jobs{queue="search-sync.listings",state="queued"}'), 3);
  t.equal(values.get('queue_service_queue_jobs{queue="search-sync.listings",state="failed"}'), 1);
  t.equal(values.get('queue_service_queue_jobs{queue="search-sync.listings",state="retrying"}'), 0);
  t.equal(values.get('queue_service_queue_jobs{queue="search-sync.listings.dead",state="queued"}'), 1);
  t.equal(values.get('queue_service_queue_dead_letters{queue="search-sync.listings"}'), 1);
  t.ok(values.get('queue_service_queue_oldest_waiting_seconds{queue="search-sync.listings"}')! > 0);
  t.equal(values.get('queue_service_queue_oldest_waiting_seconds{queue="search-sync.inventory_items"}'), 0);
  t.equal(values.get('queue_service_queue_gauges_up'), 1);

  await api.call('POST', '/api/v1/queue/dead-letters/replay', { body: { queue: 'search-sync.listings' } });
  await new Promise((resolve) => setTimeout(resolve, 1100)); // past the one-second read cache
  const after = samples((await api.call('GET', '/metrics')).body);
  t.equal(after.get('queue_service_queue_dead_letters{queue="search-sync.listings"}'), 0, 'the next scrape sees the replay');
  t.equal(after.get('queue_service_queue_jobs{queue="search-sync.listings",state="queued"}'), 4);
});

t.test('metric names follow the Prometheus conventions', async (t) => {
  const api = await startApi(t);
  const text = (await api.call('GET', '/metrics')).body;
  const families = types(text);
  for (const [name, type] of families) {
    t.match(name, /^queue_service_[a-z0-9_]+$/, `${name}: one prefix, snake_case`);
    // prom-client's standard process and Node.js set keeps its own names (nodejs_active_handles_total is a gauge).
    if (/^queue_service_(process|nodejs)_/.test(name)) continue;
    if (type === 'counter') t.match(name, /_total$/, `${name}: a counter ends in _total`);
    else t.notMatch(name, /_total$/, `${name}: only counters end in _total`);
    if (type === 'histogram') t.match(name, /_(seconds|bytes)$/, `${name}: a histogram names its unit`);
  }
  for (const [name, type] of [
    ['queue_service_jobs_settled_total', 'counter'],
    ['queue_service_documents_total', 'counter'],
    ['queue_service_batch_duration_seconds', 'histogram'],
    ['queue_service_elasticsearch_bulk_duration_seconds', 'histogram'],
    ['queue_service_worker_up', 'gauge'],
    ['queue_service_queue_jobs', 'gauge'],
    ['queue_service_queue_dead_letters', 'gauge'],
    ['queue_service_queue_oldest_waiting_seconds', 'gauge'],
    ['queue_service_process_cpu_seconds_total', 'counter'],
    ['queue_service_process_resident_memory_bytes', 'gauge'],
    ['queue_service_nodejs_eventloop_lag_seconds', 'gauge'],
  ]) {
    t.equal(families.get(name!), type, `${name} is a ${type}`);
  }
});

t.test('settled jobs, documents, batches and bulk requests are counted as sync runs', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const [good, bad] = await insertListings(db, 2);
  fake.faults.item = (item) => (item.id === bad ? { status: 400, type: 'document_parsing_exception', reason: 'failed to parse' } : undefined);
  const service = await startService(t, db, fake.url);
  await waitForIdleQueue(db);
  await eventually(async () => fake.get('listings', good!));
  const values = samples(await service.app.inject({ method: 'GET', url: '/metrics' }).then((r) => r.body));
  t.equal(values.get('queue_service_jobs_settled_total{queue="search-sync.listings",outcome="completed"}'), 1);
  t.equal(values.get('queue_service_jobs_settled_total{queue="search-sync.listings",outcome="dead_lettered"}'), 1);
  t.equal(values.get('queue_service_documents_total{table="listings",result="indexed"}'), 1);
  t.ok(values.get('queue_service_batch_duration_seconds_count{queue="search-sync.listings"}')! >= 1);
  t.ok(values.get('queue_service_elasticsearch_bulk_duration_seconds_count{table="listings",result="ok"}')! >= 1);
  t.equal(values.get('queue_service_worker_up{queue="search-sync.listings"}'), 1);
  t.equal(values.get('queue_service_queue_dead_letters{queue="search-sync.listings"}'), 1);
});

t.test('when the database cannot be read, a scrape still answers, with the gauges down and no stale numbers', async (t) => {
  const metrics = new Metrics({ processMetrics: false });
  const errors: string[] = [];
  let fail = false;
  metrics.trackQueues(
    async () => {
      if (fail) throw new Error('connection refused');
      return [{ queue: 'q', queued: 7, deferred: 0, retrying: 0, active: 0, failed: 0, dead_lettered: 2, oldest_waiting_seconds: 3 }];
    },
    (err) => errors.push(err.message),
  );
  const before = samples(await metrics.registry.metrics());
  t.equal(before.get('queue_service_queue_jobs{queue="q",state="queued"}'), 7);
  t.equal(before.get('queue_service_queue_gauges_up'), 1);
  fail = true;
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const after = samples(await metrics.registry.metrics());
  t.equal(after.get('queue_service_queue_gauges_up'), 0);
  t.equal(after.get('queue_service_queue_jobs{queue="q",state="queued"}'), undefined, 'no number is reported that was not read');
  t.equal(after.get('queue_service_queue_dead_letters{queue="q"}'), undefined);
  t.same(errors, ['connection refused'], 'the failure is reported once per scrape');
});
