import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { QueueGaugeRow } from '../db/jobs.ts';

/** What the database says about one queue, read on each scrape (queue.queue_gauges()). */
type QueueGauges = QueueGaugeRow;

const GAUGE_STATES = ['queued', 'deferred', 'retrying', 'active', 'failed'] as const;

/** Scrapes within this long of a read share it, so one scrape reads the database once. */
const GAUGE_READ_TTL_MS = 1000;

/** Every metric the service exports, on one registry (no global state: tests build their own). */
export class Metrics {
  readonly registry = new Registry();

  readonly jobsSettled = new Counter({
    name: 'queue_service_jobs_settled_total',
    help: 'Jobs settled by this process, by queue and outcome (completed, retried, dead_lettered).',
    labelNames: ['queue', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly documents = new Counter({
    name: 'queue_service_documents_total',
    help: 'Documents written to Elasticsearch, by table and result (indexed, deleted, not_found, superseded).',
    labelNames: ['table', 'result'] as const,
    registers: [this.registry],
  });

  readonly batchDuration = new Histogram({
    name: 'queue_service_batch_duration_seconds',
    help: 'Time to process one claimed batch: read the documents, bulk them, settle the jobs.',
    labelNames: ['queue'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly bulkDuration = new Histogram({
    name: 'queue_service_elasticsearch_bulk_duration_seconds',
    help: 'Latency of Elasticsearch _bulk requests, by table and result (ok, error).',
    labelNames: ['table', 'result'] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly workerUp = new Gauge({
    name: 'queue_service_worker_up',
    help: '1 while this process runs a worker for the queue, 0 while it waits (for example for Elasticsearch).',
    labelNames: ['queue'] as const,
    registers: [this.registry],
  });

  #readGauges: (() => Promise<QueueGauges[]>) | null = null;
  #onGaugeError: (err: Error) => void = () => {};
  #lastRead: { at: number; rows: Promise<QueueGauges[] | null> } | null = null;

  readonly queueJobs = new Gauge({
    name: 'queue_service_queue_jobs',
    help: 'Jobs in each queue by state (queued, deferred, retrying, active, failed), read from the database on scrape.',
    labelNames: ['queue', 'state'] as const,
    registers: [this.registry],
    collect: async () => this.#collect((rows) => {
      for (const row of rows) for (const state of GAUGE_STATES) this.queueJobs.set({ queue: row.queue, state }, row[state]);
    }, () => this.queueJobs.reset()),
  });

  readonly deadLetters = new Gauge({
    name: 'queue_service_queue_dead_letters',
    help: 'Jobs waiting in the dead-letter queue that each queue feeds, read from the database on scrape.',
    labelNames: ['queue'] as const,
    registers: [this.registry],
    collect: async () => this.#collect((rows) => {
      for (const row of rows) this.deadLetters.set({ queue: row.queue }, row.dead_lettered);
    }, () => this.deadLetters.reset()),
  });

  readonly oldestWaiting = new Gauge({
    name: 'queue_service_queue_oldest_waiting_seconds',
    help: 'Age of the oldest queued or retrying job of each queue (its sync lag); 0 when none waits.',
    labelNames: ['queue'] as const,
    registers: [this.registry],
    collect: async () => this.#collect((rows) => {
      for (const row of rows) this.oldestWaiting.set({ queue: row.queue }, row.oldest_waiting_seconds ?? 0);
    }, () => this.oldestWaiting.reset()),
  });

  readonly gaugesUp = new Gauge({
    name: 'queue_service_queue_gauges_up',
    help: '1 when the last scrape read the queue gauges from the database, 0 when that failed.',
    registers: [this.registry],
    collect: async () => this.#collect(() => this.gaugesUp.set(1), () => this.gaugesUp.set(0)),
  });

  constructor({ processMetrics = true } = {}) {
    if (processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'queue_service_' });
  }

  /** Where the queue gauges come from; until this is called they export nothing. */
  trackQueues(read: () => Promise<QueueGauges[]>, onError: (err: Error) => void): void {
    this.#readGauges = read;
    this.#onGaugeError = onError;
  }

  async #collect(apply: (rows: QueueGauges[]) => void, clear: () => void): Promise<void> {
    const rows = await this.#gauges();
    clear();
    if (rows) apply(rows);
  }

  #gauges(): Promise<QueueGauges[] | null> {
    const read = this.#readGauges;
    if (!read) return Promise.resolve(null);
    const now = Date.now();
    if (this.#lastRead && now - this.#lastRead.at < GAUGE_READ_TTL_MS) return this.#lastRead.rows;
    const rows = read().catch((err: Error) => {
      this.#onGaugeError(err);
      return null;
    });
    this.#lastRead = { at: now, rows };
    return rows;
  }
}
