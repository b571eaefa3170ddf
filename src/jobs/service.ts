import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PgBoss } from 'pg-boss';
import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import type { QueueConfig, RateLimit } from '../config/queues.ts';
import type { Pool } from '../db/pool.ts';
import type { RunningHandler, TaskHandler } from './handler.ts';
import * as plans from './plans.ts';
import { TaskWorker, type JobMetrics } from './worker.ts';

export type TaskQueueState =
  | { queue: string; status: 'running' }
  /** Its configuration is missing (no SMTP_URL, ...): nothing claims its jobs, they wait. */
  | { queue: string; status: 'paused'; reason: string }
  /** Its handler is missing or failed to start: its jobs wait too. */
  | { queue: string; status: 'failed'; reason: string }
  | { queue: string; status: 'starting' | 'stopped' };

export interface TaskServiceDeps {
  env: Env;
  pool: Pool;
  boss: PgBoss;
  metrics: JobMetrics;
  log: Logger;
  /** The task queues to work: queueConfigs(env) of kind 'task'. */
  queues: QueueConfig[];
  /** Handlers given in code (tests); the others come from src/jobs/handlers/<queue>.ts. */
  handlers?: readonly TaskHandler[];
}

/** The handler file of a queue, beside this module: .ts when run from src/, .js from dist/. */
export function handlerFile(queue: string): URL {
  const extension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./handlers/${queue}${extension}`, import.meta.url);
}

export async function loadHandler(queue: string): Promise<TaskHandler | null> {
  const file = handlerFile(queue);
  if (!existsSync(fileURLToPath(file))) return null;
  const module = (await import(file.href)) as { default?: TaskHandler };
  const handler = module.default;
  if (!handler || handler.queue !== queue || typeof handler.start !== 'function' || typeof handler.unavailable !== 'function') {
    throw new Error(`${fileURLToPath(file)} must export default defineHandler(<the ${queue} queue's definition>, {...})`);
  }
  return handler;
}

/**
 * Runs a worker for every task queue whose handler can run with this configuration. A queue
 * whose configuration is missing is left alone, so its jobs wait (nothing is lost) until the
 * service is restarted with it; the log says so once at start and /ready lists it.
 */
export class TaskService {
  readonly #deps: TaskServiceDeps;
  readonly #states = new Map<string, TaskQueueState>();
  readonly #workers: TaskWorker[] = [];
  readonly #running: RunningHandler<unknown>[] = [];

  constructor(deps: TaskServiceDeps) {
    this.#deps = deps;
    for (const q of deps.queues) this.#states.set(q.name, { queue: q.name, status: 'starting' });
  }

  get states(): TaskQueueState[] {
    return [...this.#states.values()];
  }

  async start(): Promise<void> {
    for (const queue of this.#deps.queues) {
      this.#deps.metrics.workerUp.set({ queue: queue.name }, 0);
      await this.#startQueue(queue).catch((err: Error) => {
        this.#states.set(queue.name, { queue: queue.name, status: 'failed', reason: `${queue.name}: ${err.message}` });
        this.#deps.log.error({ queue: queue.name, err: err.message }, 'task queue not started; its jobs wait');
      });
    }
  }

  async #startQueue(queue: QueueConfig): Promise<void> {
    const { env, pool, boss, metrics, log } = this.#deps;
    if (!queue.worker) return;
    const handler = this.#deps.handlers?.find((h) => h.queue === queue.name) ?? (await loadHandler(queue.name));
    if (!handler) throw new Error(`no handler: create src/jobs/handlers/${queue.name}.ts (see README, "Adding a queue")`);
    const unavailable = handler.unavailable(env);
    if (unavailable) {
      this.#states.set(queue.name, { queue: queue.name, status: 'paused', reason: `${queue.name}: ${unavailable}` });
      log.warn({ queue: queue.name, reason: unavailable }, 'task queue paused: its jobs wait until it is configured');
      return;
    }
    const queueLog = log.child({ queue: queue.name });
    // The limit is the one migrate registered, not this process's own reading of the config: every
    // process then takes permits (or not) alike, also one started with MIGRATE_ON_START=false.
    const rateLimit = await this.#registeredRateLimit(queue.name);
    const { rateLimit: _configured, ...rest } = queue;
    const worked = { ...rest, worker: queue.worker, ...(rateLimit ? { rateLimit } : {}) };
    const running = await handler.start({ env, pool, log: queueLog });
    this.#running.push(running);
    const worker = new TaskWorker({ boss, pool, queue: worked, handler: running, metrics, log: queueLog });
    await worker.start();
    this.#workers.push(worker);
    this.#states.set(queue.name, { queue: queue.name, status: 'running' });
    log.info({ queue: queue.name, ...queue.worker, rateLimit: rateLimit ?? null }, 'task queue running');
  }

  async #registeredRateLimit(queue: string): Promise<RateLimit | null> {
    const { rows: [row] } = await this.#deps.pool.query<{ limit: number | null; periodSeconds: number | null }>({ ...plans.registeredRateLimit, values: [queue] });
    if (!row) throw new Error(`${queue} is not registered in queue.task_queues: run migrate`);
    return row.limit !== null && row.periodSeconds !== null ? { limit: row.limit, periodSeconds: row.periodSeconds } : null;
  }

  /** Stops claiming, waits for the jobs in flight, then closes the handlers. */
  async stop(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.stop()));
    this.#workers.length = 0;
    await Promise.all(this.#running.map((r) => r.close?.().catch(() => {})));
    this.#running.length = 0;
    for (const [name, state] of this.#states) if (state.status === 'running') this.#states.set(name, { queue: name, status: 'stopped' });
  }
}
