import type { Job, PgBoss } from 'pg-boss';
import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import { findSyncTable, queueConfigs, RECONCILE_QUEUE, SYNC_TABLES, type SyncTable } from '../config/queues.ts';
import type { Pool } from '../db/pool.ts';
import type { SearchClient } from '../search/client.ts';
import { silentProgress } from './progress.ts';
import { driftCount, runReconcile } from './reconcile.ts';

export interface ScheduledReconcileDeps {
  boss: PgBoss;
  pool: Pool;
  /** Null when ELASTICSEARCH_URL is unset: runs then wait in their queue. */
  search: SearchClient | null;
  env: Env;
  log: Logger;
}

const CHUNK_SIZE = 1000;

/**
 * The nightly `reconcile --repair`: a pg-boss schedule (RECONCILE_CRON, UTC) puts a job on
 * maintenance.reconcile, and the service works it like any job. pg-boss's timekeeper makes one
 * job per occurrence however many containers run, and the queue's stately policy runs one at a
 * time. Each run's outcome goes to the log and to queue.reconcile_runs.
 */
export class ScheduledReconcile {
  readonly #deps: ScheduledReconcileDeps;
  readonly #abort = new AbortController();
  #working = false;

  constructor(deps: ScheduledReconcileDeps) {
    this.#deps = deps;
  }

  /** Never fails the service: without its queue (migrate not run yet) there is just no schedule. */
  async start(): Promise<void> {
    try {
      await this.#start();
    } catch (err) {
      this.#deps.log.warn({ err: (err as Error).message, queue: RECONCILE_QUEUE }, 'scheduled reconcile not started; run migrate, which creates its queue');
    }
  }

  async #start(): Promise<void> {
    const { boss, search, env, log } = this.#deps;
    if (env.reconcileCron) {
      await boss.schedule(RECONCILE_QUEUE, env.reconcileCron, { repair: true }, { tz: 'UTC' });
      log.info({ queue: RECONCILE_QUEUE, cron: env.reconcileCron }, 'reconcile scheduled (UTC)');
    } else {
      await boss.unschedule(RECONCILE_QUEUE);
      log.info({ queue: RECONCILE_QUEUE }, 'RECONCILE_CRON is off: no scheduled reconcile');
    }
    if (!search) return;
    const worker = queueConfigs(env).find((q) => q.name === RECONCILE_QUEUE)!.worker!;
    await boss.work<unknown>(
      RECONCILE_QUEUE,
      { batchSize: worker.batchSize, localConcurrency: worker.concurrency, pollingIntervalSeconds: worker.pollingIntervalSeconds },
      // One job per batch (the queue's batchSize is 1): a run is long, and one at a time.
      ([job]) => this.#run(job!, search),
    );
    this.#working = true;
  }

  /** Ends a run in flight at its next chunk (pg-boss retries the job later) and stops working. */
  async stop(): Promise<void> {
    this.#abort.abort();
    if (this.#working) await this.#deps.boss.offWork(RECONCILE_QUEUE, { wait: true });
    this.#working = false;
  }

  async #run(job: Job<unknown>, search: SearchClient): Promise<Record<string, unknown>> {
    const { pool, env, log } = this.#deps;
    const { repair, tables } = parseReconcileJob(job.data);
    const outcomes = await runReconcile(
      { pool, search, log: log.child({ job: job.id, queue: RECONCILE_QUEUE }), progress: silentProgress, signal: this.#abort.signal },
      tables,
      { source: 'schedule', repair, indexPrefix: env.indexPrefix, chunkSize: CHUNK_SIZE },
    );
    if (this.#abort.signal.aborted) throw new Error('reconcile interrupted by shutdown; it runs again on retry');
    const failed = outcomes.filter((o) => o.error);
    if (failed.length > 0) throw new Error(`reconcile failed for ${failed.map((o) => `${o.table}: ${o.error}`).join('; ')}`);
    return Object.fromEntries(
      outcomes.map((o) => [o.table, { drift: driftCount(o.report!), missing: o.report!.missing.count, stale: o.report!.stale.count, orphaned: o.report!.orphaned.count, repaired: o.report!.repaired }]),
    );
  }
}

/** Job data as the queue's dataSchema describes it: `{repair?: boolean, tables?: string[]}`. */
export function parseReconcileJob(data: unknown): { repair: boolean; tables: SyncTable[] } {
  const value = (data ?? {}) as Record<string, unknown>;
  if (typeof value !== 'object' || Array.isArray(value)) throw new Error('reconcile job data must be an object {repair, tables}');
  const unknownKeys = Object.keys(value).filter((k) => k !== 'repair' && k !== 'tables');
  if (unknownKeys.length > 0) throw new Error(`reconcile job data has unknown field ${unknownKeys.join(', ')} (allowed: repair, tables)`);
  if (value.repair !== undefined && typeof value.repair !== 'boolean') throw new Error('reconcile job data: repair must be true or false');
  if (value.tables === undefined) return { repair: value.repair ?? true, tables: [...SYNC_TABLES] };
  if (!Array.isArray(value.tables) || value.tables.length === 0) throw new Error('reconcile job data: tables must be a non-empty list of synced tables');
  const tables = value.tables.map((name: unknown) => {
    const table = typeof name === 'string' ? findSyncTable(name) : undefined;
    if (!table) throw new Error(`reconcile job data: ${JSON.stringify(name)} is not a synced table (${SYNC_TABLES.map((t) => t.table).join(', ')})`);
    return table;
  });
  return { repair: (value.repair as boolean | undefined) ?? true, tables };
}
