import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PgBoss } from 'pg-boss';
import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import type { QueueConfig, WorkerSettings } from '../config/queues.ts';
import type { Pool } from '../db/pool.ts';
import type { RunningHandler, TaskHandler } from './handler.ts';
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
    const running = await handler.start({ env, pool, log: queueLog });
    this.#running.push(running);
    const worker = new TaskWorker({ boss, pool, queue: queue as QueueConfig & { worker: WorkerSettings }, handler: running, metrics, log: queueLog });
    await worker.start();
    this.#workers.push(worker);
    this.#states.set(queue.name, { queue: queue.name, status: 'running' });
    log.info({ queue: queue.name, ...queue.worker, rateLimit: queue.rateLimit ?? null }, 'task queue running');
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
