import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

  constructor({ processMetrics = true } = {}) {
    if (processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'queue_service_' });
  }
}
