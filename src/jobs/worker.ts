import type { Job, JobResult, PgBoss } from 'pg-boss';
import type { Counter, Gauge, Histogram } from 'prom-client';
import type { Logger } from '../config/logger.ts';
import { workOptions, type QueueConfig, type RateLimit, type WorkerSettings } from '../config/queues.ts';
import type { Pool } from '../db/pool.ts';
import { JobError, type RunningHandler } from './handler.ts';
import * as plans from './plans.ts';
import { payloadCheck, type PayloadCheck } from './validate.ts';

/** The service's metrics a task worker reports to (src/sync/metrics.ts has them). */
export interface JobMetrics {
  jobsSettled: Counter<'queue' | 'outcome'>;
  batchDuration: Histogram<'queue'>;
  workerUp: Gauge<'queue'>;
}

export interface TaskWorkerDeps {
  boss: PgBoss;
  pool: Pool;
  queue: QueueConfig & { worker: WorkerSettings };
  handler: RunningHandler<unknown>;
  metrics: JobMetrics;
  log: Logger;
}

const NEVER_ABORTED = new AbortController().signal;

/**
 * Runs one task queue's jobs through its handler. A queue without a rate limit is worked by
 * pg-boss's own workers (LISTEN/NOTIFY wake-ups, polling, graceful stop); a rate-limited one by
 * PermitLoops that take permits in Postgres before they fetch, and fetch only as many jobs as
 * they were granted. Either way a batch's jobs run together and each settles on its own.
 */
export class TaskWorker {
  readonly queue: string;
  readonly #deps: TaskWorkerDeps;
  readonly #check: PayloadCheck;
  #workId: string | null = null;
  #loops: PermitLoop[] = [];

  constructor(deps: TaskWorkerDeps) {
    this.#deps = deps;
    this.queue = deps.queue.name;
    this.#check = payloadCheck(deps.queue.dataSchema);
  }

  async start(): Promise<void> {
    const { boss, queue, metrics } = this.#deps;
    const settings = queue.worker;
    if (queue.rateLimit) {
      this.#loops = Array.from({ length: settings.concurrency }, () => new PermitLoop(this.#deps, queue.rateLimit!, (jobs) => this.runBatch(jobs)));
      for (const loop of this.#loops) loop.start();
    } else {
      this.#workId = await boss.work<unknown>(
        this.queue,
        { ...workOptions(settings), perJobResults: true },
        (jobs) => this.runBatch(jobs),
      );
    }
    metrics.workerUp.set({ queue: this.queue }, 1);
  }

  /** Stops claiming; the jobs in flight finish first. */
  async stop(): Promise<void> {
    if (this.#workId) await this.#deps.boss.offWork(this.queue, { wait: true });
    await Promise.all(this.#loops.map((loop) => loop.stop()));
    this.#workId = null;
    this.#loops = [];
    this.#deps.metrics.workerUp.set({ queue: this.queue }, 0);
  }

  async runBatch(jobs: Job<unknown>[]): Promise<JobResult[]> {
    const { metrics, log } = this.#deps;
    const started = performance.now();
    const results = await Promise.all(jobs.map((job) => this.#runOne(job)));
    const counts = { completed: 0, retried: 0, dead_lettered: 0 };
    for (const r of results) counts[r.status === 'completed' ? 'completed' : r.status === 'failed' ? 'retried' : 'dead_lettered']++;
    for (const [outcome, n] of Object.entries(counts)) if (n > 0) metrics.jobsSettled.inc({ queue: this.queue, outcome }, n);
    const durationMs = Math.round(performance.now() - started);
    metrics.batchDuration.observe({ queue: this.queue }, durationMs / 1000);
    const failures = results.filter((r) => r.status !== 'completed');
    const line = { size: jobs.length, ...counts, durationMs };
    if (failures.length === 0) log.info(line, 'batch done');
    else log.warn({ ...line, failures: failures.slice(0, 20).map((r) => ({ job: r.id, status: r.status, ...(r.output as object) })) }, 'batch done with failures');
    return results;
  }

  async #runOne(job: Job<unknown>): Promise<JobResult> {
    const problem = this.#check(job.data);
    if (problem) return { id: job.id, status: 'deadletter', output: { error: 'invalid_job_data', reason: problem } };
    const { handler, log } = this.#deps;
    const info = { id: job.id, queue: this.queue, attempt: job.retryCount + 1, signal: job.signal ?? NEVER_ABORTED, log: log.child({ job: job.id }) };
    try {
      const output = await handler.run(job.data, info);
      return { id: job.id, status: 'completed', output };
    } catch (err) {
      if (err instanceof JobError) {
        const output = { ...err.detail, error: err.code, reason: err.message, retryable: err.retryable };
        return { id: job.id, status: err.retryable ? 'failed' : 'deadletter', output };
      }
      return { id: job.id, status: 'failed', output: { error: 'handler_error', reason: (err as Error).message ?? String(err), retryable: true } };
    }
  }
}

/**
 * One worker of a rate-limited queue: take permits, fetch that many jobs, run them, settle them,
 * and wait for the next permit when the limit is reached. Permits a fetch found no job for go
 * back. A process that dies between a grant and its calls wastes those permits, never exceeds
 * the limit.
 */
class PermitLoop {
  readonly #deps: TaskWorkerDeps;
  readonly #limit: RateLimit;
  readonly #run: (jobs: Job<unknown>[]) => Promise<JobResult[]>;
  #stopping = false;
  #running: Promise<void> | null = null;
  #wake: (() => void) | null = null;

  constructor(deps: TaskWorkerDeps, limit: RateLimit, run: (jobs: Job<unknown>[]) => Promise<JobResult[]>) {
    this.#deps = deps;
    this.#limit = limit;
    this.#run = run;
  }

  start(): void {
    this.#running = this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#running;
  }

  async #loop(): Promise<void> {
    const { log, queue } = this.#deps;
    const idleMs = queue.worker.pollingIntervalSeconds * 1000;
    while (!this.#stopping) {
      let delayMs: number;
      try {
        delayMs = await this.#turn(idleMs);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'rate-limited worker could not fetch; trying again');
        delayMs = idleMs;
      }
      if (delayMs > 0 && !this.#stopping) await this.#sleep(delayMs);
    }
  }

  /** One grant, fetch and batch; returns how long to wait before the next. */
  async #turn(idleMs: number): Promise<number> {
    const { pool, boss, queue } = this.#deps;
    const wanted = Math.min(queue.worker.batchSize, this.#limit.limit);
    const { rows: [grant] } = await pool.query<{ granted: number; grantId: number | null; retryAfterMs: number }>({ ...plans.takePermits, values: [queue.name, wanted] });
    if (!grant || grant.granted === 0) return grant?.retryAfterMs ?? idleMs;
    let jobs: Job<unknown>[] = [];
    try {
      jobs = await boss.fetch<unknown>(queue.name, { batchSize: grant.granted });
    } finally {
      const unused = grant.granted - jobs.length;
      if (unused > 0 && grant.grantId !== null) await pool.query({ ...plans.returnPermits, values: [grant.grantId, unused] });
    }
    if (jobs.length === 0) return idleMs;
    await this.#settle(jobs, await this.#run(jobs));
    if (jobs.length < grant.granted) return idleMs; // the queue is drained
    return grant.granted < wanted ? grant.retryAfterMs : 0;
  }

  /** What pg-boss's perJobResults does for work(): each job completed, retried or dead-lettered. */
  async #settle(jobs: Job<unknown>[], results: JobResult[]): Promise<void> {
    const { boss, pool, queue } = this.#deps;
    const byId = new Map(jobs.map((j) => [j.id, j]));
    for (const result of results) {
      const job = byId.get(result.id)!;
      const attempt = { id: job.id, retryCount: job.retryCount };
      if (result.status === 'completed') {
        await boss.complete(queue.name, [attempt], result.output);
        continue;
      }
      if (result.status === 'deadletter') await pool.query({ ...plans.exhaustRetries, values: [queue.name, job.id, job.retryCount] });
      await boss.fail(queue.name, [attempt], result.output);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}
