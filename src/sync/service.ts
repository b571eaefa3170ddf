import type { PgBoss } from 'pg-boss';
import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import { indexAlias, queueConfigs, SYNC_TABLES, type SyncTable } from '../config/queues.ts';
import * as plans from '../db/plans.ts';
import type { Pool } from '../db/pool.ts';
import { describeSearchError, type SearchClient } from '../search/client.ts';
import { ensureIndex } from '../search/indices.ts';
import type { Metrics } from './metrics.ts';
import { WakeupFollower } from './wakeup.ts';
import { SyncWorker } from './worker.ts';

export type SearchState =
  | { status: 'not_configured' }
  | { status: 'connecting'; lastError?: string }
  | { status: 'ready' };

export interface SyncServiceDeps {
  databaseUrl: string;
  env: Env;
  pool: Pool;
  boss: PgBoss;
  search: SearchClient | null;
  metrics: Metrics;
  log: Logger;
  tables?: readonly SyncTable[];
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

/**
 * Runs one sync worker per synced table once Elasticsearch is reachable and its indices exist.
 * Until then no sync job is claimed: they wait in the queue, and readiness says why.
 */
export class SyncService {
  readonly #deps: SyncServiceDeps;
  readonly #tables: readonly SyncTable[];
  #workers: SyncWorker[] = [];
  #wakeup: WakeupFollower | null = null;
  #state: SearchState;
  #stopped = false;
  #connecting: Promise<void> | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #endRetryWait: (() => void) | null = null;

  constructor(deps: SyncServiceDeps) {
    this.#deps = deps;
    this.#tables = deps.tables ?? SYNC_TABLES;
    this.#state = deps.search ? { status: 'connecting' } : { status: 'not_configured' };
  }

  get state(): SearchState {
    return this.#state;
  }

  get workersRunning(): number {
    return this.#workers.length;
  }

  aliasOf(table: SyncTable): string {
    return indexAlias(this.#deps.env.indexPrefix, table);
  }

  /** Resolves at once; connecting to Elasticsearch goes on in the background, with backoff. */
  start(): void {
    const { search, log, metrics } = this.#deps;
    for (const table of this.#tables) metrics.workerUp.set({ queue: table.queue }, 0);
    if (!search) {
      log.warn('ELASTICSEARCH_URL is not set: search sync is paused and jobs stay queued until it is set');
      return;
    }
    this.#connecting = this.#connect(RETRY_MIN_MS);
  }

  async #connect(delayMs: number): Promise<void> {
    const { search, log } = this.#deps;
    if (this.#stopped || !search) return;
    try {
      for (const table of this.#tables) {
        await ensureIndex(search, { alias: this.aliasOf(table), mappings: table.mappings });
      }
      await this.#startWorkers(search);
    } catch (err) {
      const lastError = describeSearchError(err);
      this.#state = { status: 'connecting', lastError };
      log.warn({ err: lastError, retryInMs: delayMs }, 'search sync not started yet (Elasticsearch indices or workers); jobs wait');
      await new Promise<void>((resolve) => {
        this.#endRetryWait = resolve;
        this.#retryTimer = setTimeout(resolve, delayMs);
      });
      return this.#connect(Math.min(delayMs * 2, RETRY_MAX_MS));
    }
  }

  async #startWorkers(search: SearchClient): Promise<void> {
    const { boss, pool, env, metrics, log, databaseUrl } = this.#deps;
    if (this.#stopped) return;
    // A worker that started before a failure further down is stopped, so a retry starts clean.
    await Promise.all(this.#workers.map((w) => w.stop()));
    this.#workers = [];
    const settings = new Map(queueConfigs(env).map((q) => [q.name, q.worker]));
    for (const table of this.#tables) {
      const alias = this.aliasOf(table);
      const worker = new SyncWorker({
        boss,
        pool,
        search,
        table,
        settings: settings.get(table.queue) ?? { batchSize: env.syncBatchSize, concurrency: env.syncConcurrency, pollingIntervalSeconds: env.syncPollingIntervalSeconds },
        targets: () => writeTargets(pool, alias),
        metrics,
        log: log.child({ queue: table.queue }),
        maxReadAgeMs: Math.min((env.syncExpireSeconds * 1000) / 2, 300_000),
      });
      await worker.start();
      this.#workers.push(worker);
    }
    this.#wakeup = new WakeupFollower(databaseUrl, boss, this.#tables.map((t) => t.queue), log);
    await this.#wakeup.start().catch((err: Error) => log.warn({ err: err.message }, 'wake-up follower not started; polling covers it'));
    this.#state = { status: 'ready' };
    log.info({ queues: this.#tables.map((t) => t.queue) }, 'search sync running');
  }

  /** Stops claiming and waits for the batches in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#endRetryWait?.();
    await this.#connecting?.catch(() => {});
    await this.#wakeup?.stop();
    await Promise.all(this.#workers.map((w) => w.stop()));
    this.#workers = [];
  }
}

/**
 * The alias, and while `reindex --rebuild` runs, its new index too. Read for every batch from the
 * database rather than cached: a worker that missed the start of a rebuild would write past the
 * new index, which the alias then swaps in without that write.
 */
async function writeTargets(pool: Pool, alias: string): Promise<string[]> {
  const { rows } = await pool.query<{ new_index: string }>({ ...plans.rebuildTarget, values: [alias] });
  return [alias, ...rows.map((r) => r.new_index)];
}
