// End-to-end sync: rows committed -> documents acknowledged by a fast fake Elasticsearch, in one
// run, for this service and for the design it replaces (BullMQ on Redis, one job per row).
//
//   npm run bench:sync        (BACKLOG=100000 STEADY=20000 LATENCY_SECONDS=30 BULL_ROWS=20000)
//   SWEEP=1 npm run bench:sync   also tries batch sizes and concurrencies for the defaults
//
// The service runs as its own process, exactly as `queue-service start` runs it; the fake
// Elasticsearch answers in this process. RSS is the service process's, sampled every 100 ms.
import type { ChildProcess } from 'node:child_process';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { FakeElasticsearch } from '../test/helpers/fake-elasticsearch.ts';
import { benchDatabase, fmt, percentile, rssMb, spawnService, table, timed, type BenchDatabase } from './lib.ts';

const BACKLOG = Number(process.env.BACKLOG ?? 100_000);
const STEADY = Number(process.env.STEADY ?? 20_000);
const LATENCY_SECONDS = Number(process.env.LATENCY_SECONDS ?? 30);
const LATENCY_RATE = 50;
const BULL_ROWS = Number(process.env.BULL_ROWS ?? 20_000);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

interface RunningService {
  child: ChildProcess;
  peakRssMb: () => number;
  stop(): Promise<void>;
}

async function startService(db: BenchDatabase, es: FakeElasticsearch, extra: Record<string, string> = {}): Promise<RunningService> {
  const child = spawnService({ DATABASE_URL: db.url, ELASTICSEARCH_URL: es.url, ...extra });
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(child.pid!))), 100);
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Ready when both aliases exist in the fake: the service created its indices.
  while (!es.aliases.has('listings') || !es.aliases.has('inventory_items')) await new Promise((r) => setTimeout(r, 20));
  return {
    child,
    peakRssMb: () => peak,
    async stop() {
      clearInterval(sampler);
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function insertRows(pool: pg.Pool, count: number): Promise<void> {
  for (let done = 0; done < count; done += 10_000) {
    await pool.query(
      `INSERT INTO listings (seller_id, title, price_cents) SELECT gen_random_uuid(), 'row ' || i, i FROM generate_series(1, $1::int) i`,
      [Math.min(10_000, count - done)],
    );
  }
}

async function waitForDocuments(es: FakeElasticsearch, count: number, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (es.count('listings') < count) {
    if (Date.now() > deadline) throw new Error(`only ${es.count('listings')} of ${count} documents after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A backlog already in the queue when the service starts: pure drain rate. */
async function backlog(rows: number, extra: Record<string, string> = {}) {
  const db = await benchDatabase('sync_backlog', { withQueue: true });
  const es = await new FakeElasticsearch({ record: false }).start();
  try {
    await insertRows(db.pool, rows);
    const started = performance.now();
    const service = await startService(db, es, extra);
    await waitForDocuments(es, rows);
    const seconds = (performance.now() - started) / 1000;
    await service.stop();
    return { rowsPerSecond: rows / seconds, seconds, peakRssMb: service.peakRssMb() };
  } finally {
    await es.stop();
    await db.drop();
  }
}

/** Writers inserting as fast as they can while the service syncs: committed -> acknowledged. */
async function steady(rows: number) {
  const db = await benchDatabase('sync_steady', { withQueue: true });
  const es = await new FakeElasticsearch({ record: false }).start();
  const service = await startService(db, es);
  try {
    const clients = 10;
    const { ms } = await timed(async () => {
      await Promise.all(
        Array.from({ length: clients }, async () => {
          for (let i = 0; i < rows / clients / 10; i++) {
            await db.pool.query(`INSERT INTO listings (seller_id, title, price_cents) SELECT gen_random_uuid(), 'steady', g FROM generate_series(1, 10) g`);
          }
        }),
      );
      await waitForDocuments(es, rows);
    });
    return { rowsPerSecond: rows / (ms / 1000), peakRssMb: service.peakRssMb() };
  } finally {
    await service.stop();
    await es.stop();
    await db.drop();
  }
}

/** Single-row commits at a fixed rate; latency from COMMIT returning to the bulk request arriving. */
async function latency() {
  const db = await benchDatabase('sync_latency', { withQueue: true });
  const es = await new FakeElasticsearch().start();
  const arrived = new Map<string, number>();
  es.onBulk = () => {
    const now = performance.now();
    queueMicrotask(() => {
      for (const item of es.bulkRequests.at(-1) ?? []) if (!arrived.has(item.id)) arrived.set(item.id, now);
    });
  };
  const service = await startService(db, es);
  const committed = new Map<string, number>();
  try {
    const total = LATENCY_SECONDS * LATENCY_RATE;
    const started = performance.now();
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / LATENCY_RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const { rows } = await db.pool.query<{ id: string }>(`INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), 'latency', 1) RETURNING id`);
      committed.set(rows[0]!.id, performance.now());
    }
    await waitForDocuments(es, total);
    // The bulk hook runs before the fake parses the request; give the last microtasks a turn.
    await new Promise((r) => setTimeout(r, 50));
    const latencies = [...committed].map(([id, at]) => (arrived.get(id) ?? NaN) - at);
    return { p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), max: Math.max(...latencies) };
  } finally {
    await service.stop();
    await es.stop();
    await db.drop();
  }
}

/**
 * The design this replaces: the app adds one BullMQ job per written row; a worker with
 * concurrency 10 reads the row and indexes it with one request.
 */
async function bullmq(rows: number) {
  const db = await benchDatabase('sync_bullmq');
  const es = await new FakeElasticsearch({ record: false }).start();
  await fetch(`${es.url}/listings_v1`, { method: 'PUT', body: JSON.stringify({ aliases: { listings: {} } }), headers: { 'content-type': 'application/json' } });
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const workerConnection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const name = `bench-${process.pid}-${Date.now()}`;
  const queue = new Queue(name, { connection });
  const readPool = new pg.Pool({ connectionString: db.url, max: 10 });
  try {
    const { rows: inserted } = await db.pool.query<{ id: string }>(
      `INSERT INTO listings (seller_id, title, price_cents) SELECT gen_random_uuid(), 'bull ' || i, i FROM generate_series(1, $1::int) i RETURNING id`,
      [rows],
    );
    for (let i = 0; i < inserted.length; i += 1000) {
      await queue.addBulk(inserted.slice(i, i + 1000).map((r) => ({ name: 'sync', data: { table: 'listings', id: r.id }, opts: { attempts: 3, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: true } })));
    }
    const started = performance.now();
    const worker = new Worker(
      name,
      async (job) => {
        const { rows: docs } = await readPool.query(`SELECT to_jsonb(l) AS doc FROM listings l WHERE id = $1`, [job.data.id]);
        const res = await fetch(`${es.url}/listings/_doc/${job.data.id}`, { method: 'PUT', body: JSON.stringify(docs[0].doc), headers: { 'content-type': 'application/json' } });
        if (!res.ok) throw new Error(`index failed: ${res.status}`);
      },
      { connection: workerConnection, concurrency: 10 },
    );
    await waitForDocuments(es, rows);
    const seconds = (performance.now() - started) / 1000;
    await worker.close();
    return { rowsPerSecond: rows / seconds, seconds };
  } finally {
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
    connection.disconnect();
    workerConnection.disconnect();
    await readPool.end();
    await es.stop();
    await db.drop();
  }
}

async function sweep() {
  const results: Record<string, string>[] = [];
  for (const batch of [100, 250, 500, 1000]) {
    for (const concurrency of [1, 2, 4]) {
      const r = await backlog(20_000, { SYNC_BATCH_SIZE: String(batch), SYNC_CONCURRENCY: String(concurrency) });
      results.push({ batch: String(batch), concurrency: String(concurrency), 'rows/s': fmt(r.rowsPerSecond), 'peak RSS MB': fmt(r.peakRssMb) });
      process.stderr.write(`  batch ${batch} x ${concurrency}: ${fmt(r.rowsPerSecond)} rows/s\n`);
    }
  }
  console.log('\nbatch size x concurrency, 20,000-row backlog\n');
  console.log(table(results));
}

if (process.env.SWEEP) await sweep();

process.stderr.write(`backlog of ${fmt(BACKLOG)} rows\n`);
const drained = await backlog(BACKLOG);
process.stderr.write(`steady writes, ${fmt(STEADY)} rows\n`);
const live = await steady(STEADY);
process.stderr.write(`latency at ${LATENCY_RATE} writes/s for ${LATENCY_SECONDS} s\n`);
const lat = await latency();
process.stderr.write(`BullMQ baseline, ${fmt(BULL_ROWS)} rows\n`);
const bull = await bullmq(BULL_ROWS);

console.log(`\nsync, end to end against a fast fake Elasticsearch (default settings)\n`);
console.log(
  table([
    { workload: `backlog of ${fmt(BACKLOG)} rows`, 'rows/s': fmt(drained.rowsPerSecond), 'vs BullMQ': fmt(drained.rowsPerSecond / bull.rowsPerSecond, 1) + '×', 'peak RSS MB': fmt(drained.peakRssMb) },
    { workload: `steady writes, ${fmt(STEADY)} rows from 10 clients`, 'rows/s': fmt(live.rowsPerSecond), 'vs BullMQ': fmt(live.rowsPerSecond / bull.rowsPerSecond, 1) + '×', 'peak RSS MB': fmt(live.peakRssMb) },
    { workload: `BullMQ, one job per row, concurrency 10 (${fmt(BULL_ROWS)} rows)`, 'rows/s': fmt(bull.rowsPerSecond), 'vs BullMQ': '1.0×', 'peak RSS MB': 'n/a (in the bench process)' },
  ]),
);
console.log(`\nlatency, COMMIT -> bulk request, ${LATENCY_RATE} single-row writes/s for ${LATENCY_SECONDS} s: p50 ${fmt(lat.p50, 1)} ms, p95 ${fmt(lat.p95, 1)} ms, p99 ${fmt(lat.p99, 1)} ms, max ${fmt(lat.max, 1)} ms`);
