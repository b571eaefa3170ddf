import type { Job, JobResult, PgBoss } from 'pg-boss';
import type { Logger } from '../config/logger.ts';
import { workOptions, type SyncTable, type WorkerSettings } from '../config/queues.ts';
import * as plans from '../db/plans.ts';
import type { Pool } from '../db/pool.ts';
import { sendBulk, type ItemOutcome, type SyncDocument } from '../search/bulk.ts';
import { describeSearchError, statusOf, type SearchClient } from '../search/client.ts';
import { keyValidator, parseSyncJob, type KeyValidator } from './job-data.ts';
import type { Metrics } from './metrics.ts';

export interface SyncWorkerDeps {
  boss: PgBoss;
  pool: Pool;
  search: SearchClient;
  table: SyncTable;
  settings: WorkerSettings;
  /** The indices each batch writes to: the alias, or the alias and a rebuild's new index. */
  targets: () => Promise<string[]>;
  metrics: Metrics;
  log: Logger;
  /** Longest a batch's documents may wait between their read and their bulk request. */
  maxReadAgeMs: number;
}

interface Outcomes {
  completed: number;
  retried: number;
  deadLettered: number;
}

/**
 * Keeps one table's index equal to its document view. Each batch: one query reads the current
 * document (and version) of every row in it, one _bulk request writes them all, and every item's
 * own result settles its job.
 */
export class SyncWorker {
  readonly queue: string;
  readonly #deps: SyncWorkerDeps;
  #validateKey: KeyValidator | null = null;
  #readStatement: plans.Statement | null = null;
  #workId: string | null = null;

  constructor(deps: SyncWorkerDeps) {
    this.#deps = deps;
    this.queue = deps.table.queue;
  }

  async start(): Promise<void> {
    const { boss, pool, table, settings, metrics } = this.#deps;
    const qualified = `${table.schema}.${table.table}`;
    const { rows } = await pool.query<{ type: string }>(plans.keyType, [qualified]);
    const type = rows[0]?.type;
    if (!type) throw new Error(`${qualified} has no single-column primary key`);
    this.#validateKey = keyValidator(type);
    if (!this.#validateKey) throw new Error(`${qualified} has a primary key of type ${type}; sync supports uuid, integer and text keys`);
    this.#readStatement = plans.readDocuments(table.documentView, `queue.${table.table}_version`, table.key, type);
    this.#workId = await boss.work<unknown>(
      this.queue,
      {
        ...workOptions(settings),
        perJobResults: true,
        // A full batch means more are waiting: fetch again at once instead of after the poll.
        burstWhenBatchFull: true,
      },
      (jobs) => this.handle(jobs),
    );
    metrics.workerUp.set({ queue: this.queue }, 1);
  }

  /** Stops claiming; in-flight batches finish (pg-boss waits for them). */
  async stop(): Promise<void> {
    if (!this.#workId) return;
    await this.#deps.boss.offWork(this.queue, { wait: true });
    this.#workId = null;
    this.#deps.metrics.workerUp.set({ queue: this.queue }, 0);
  }

  async handle(jobs: Job<unknown>[]): Promise<JobResult[]> {
    const { table, metrics, log } = this.#deps;
    const started = performance.now();
    const results: JobResult[] = [];
    const byId = new Map<string, Job<unknown>[]>();
    for (const job of jobs) {
      const parsed = parseSyncJob(job.data, table.table, this.#validateKey!);
      if (!parsed.ok) {
        results.push({ id: job.id, status: 'deadletter', output: { error: 'invalid_job_data', reason: parsed.reason } });
        continue;
      }
      byId.set(parsed.id, [...(byId.get(parsed.id) ?? []), job]);
    }

    if (byId.size > 0) {
      const outcomes = await this.#sync([...byId.keys()]);
      const retryable = [...outcomes].filter(([, o]) => o.kind === 'retry').map(([id]) => id);
      const superseded = await this.#supersededKeys(retryable, jobs);
      for (const [id, outcome] of outcomes) {
        for (const job of byId.get(id)!) results.push(this.#settle(job, outcome, superseded.has(id)));
      }
    }

    const counts = tally(results);
    metrics.jobsSettled.inc({ queue: this.queue, outcome: 'completed' }, counts.completed);
    metrics.jobsSettled.inc({ queue: this.queue, outcome: 'retried' }, counts.retried);
    metrics.jobsSettled.inc({ queue: this.queue, outcome: 'dead_lettered' }, counts.deadLettered);
    const durationMs = Math.round(performance.now() - started);
    metrics.batchDuration.observe({ queue: this.queue }, durationMs / 1000);
    const failed = results.filter((r) => r.status !== 'completed');
    const line = { size: jobs.length, ...counts, durationMs };
    if (failed.length === 0) log.info(line, 'batch synced');
    else log.warn({ ...line, failures: failed.slice(0, 20).map((r) => ({ job: r.id, status: r.status, ...(r.output as object) })) }, 'batch synced with failures');
    return results;
  }

  /** Reads and writes the documents of these ids; every id gets an outcome, nothing throws. */
  async #sync(ids: string[]): Promise<Map<string, ItemOutcome>> {
    let documents: SyncDocument[];
    let targets: string[];
    const readAt = performance.now();
    try {
      targets = await this.#deps.targets();
      documents = await this.#read(ids);
    } catch (err) {
      return everyId(ids, { kind: 'retry', status: 0, type: 'database_error', reason: (err as Error).message });
    }
    return this.#write(documents, targets, readAt);
  }

  async #read(ids: string[]): Promise<SyncDocument[]> {
    const { name, text } = this.#readStatement!;
    const { rows } = await this.#deps.pool.query<{ id: string; version: number; source: Record<string, unknown> | null }>({ name, text, values: [ids] });
    return rows.map((r) => ({ id: r.id, version: r.version, source: r.source }));
  }

  /** One bulk request; a 413 splits the batch in halves until the pieces fit. */
  async #write(documents: SyncDocument[], targets: string[], readAt: number): Promise<Map<string, ItemOutcome>> {
    const { search, metrics, table, maxReadAgeMs } = this.#deps;
    const ids = documents.map((d) => d.id);
    // Past this age another worker may have synced a newer state and Elasticsearch may have
    // forgotten the tombstone that would refuse this one: read again instead.
    if (performance.now() - readAt > maxReadAgeMs) {
      return everyId(ids, { kind: 'retry', status: 0, type: 'stale_read', reason: `documents were read more than ${maxReadAgeMs} ms before the bulk request` });
    }
    const started = performance.now();
    try {
      const { outcomes } = await sendBulk(search, documents, targets);
      metrics.bulkDuration.observe({ table: table.table, result: 'ok' }, (performance.now() - started) / 1000);
      for (const outcome of outcomes.values()) {
        if (outcome.kind === 'done') metrics.documents.inc({ table: table.table, result: outcome.result });
      }
      return outcomes;
    } catch (err) {
      metrics.bulkDuration.observe({ table: table.table, result: 'error' }, (performance.now() - started) / 1000);
      const status = statusOf(err);
      if (status === 413) {
        if (documents.length === 1) {
          return everyId(ids, { kind: 'dead', status, type: 'request_entity_too_large', reason: 'the document alone is larger than Elasticsearch accepts (http.max_content_length)' });
        }
        const half = Math.ceil(documents.length / 2);
        const [first, second] = await Promise.all([
          this.#write(documents.slice(0, half), targets, readAt),
          this.#write(documents.slice(half), targets, readAt),
        ]);
        return new Map([...first, ...second]);
      }
      return everyId(ids, { kind: 'retry', status: status ?? 0, type: 'request_failed', reason: describeSearchError(err) });
    }
  }

  /**
   * Keys whose failing job has a newer one waiting: that job reads the row afresh when it runs, so
   * the failing one is done. Retrying it too would collide with the waiting job under the stately
   * policy and send it to the dead-letter queue for no reason.
   */
  async #supersededKeys(keys: string[], batch: Job<unknown>[]): Promise<Set<string>> {
    if (keys.length === 0) return new Set();
    try {
      const { rows } = await this.#deps.pool.query<{ key: string }>({
        ...plans.waitingKeys,
        values: [this.queue, keys, batch.map((j) => j.id)],
      });
      return new Set(rows.map((r) => r.key));
    } catch {
      return new Set();
    }
  }

  #settle(job: Job<unknown>, outcome: ItemOutcome, superseded: boolean): JobResult {
    if (outcome.kind === 'done') return { id: job.id, status: 'completed', output: { result: outcome.result } };
    const detail = { status: outcome.status, error: outcome.type, reason: outcome.reason };
    if (outcome.kind === 'dead') return { id: job.id, status: 'deadletter', output: detail };
    if (superseded) return { id: job.id, status: 'completed', output: { result: 'superseded_by_waiting_job', lastError: detail } };
    return { id: job.id, status: 'failed', output: detail };
  }
}

function everyId(ids: string[], outcome: ItemOutcome): Map<string, ItemOutcome> {
  return new Map(ids.map((id) => [id, outcome]));
}

function tally(results: JobResult[]): Outcomes {
  const counts: Outcomes = { completed: 0, retried: 0, deadLettered: 0 };
  for (const r of results) {
    if (r.status === 'completed') counts.completed++;
    else if (r.status === 'failed') counts.retried++;
    else counts.deadLettered++;
  }
  return counts;
}
