// The handler model: a task queue's definition (src/config/task-queues.ts) names the payload, and
// its handler (src/jobs/handlers/<queue>.ts) runs one job's payload, already validated against
// the queue's schema. What the handler returns is stored as the job's output; what it throws
// decides between a retry and the dead-letter queue.
import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import type { TaskQueue } from '../config/task-queues.ts';
import type { Pool } from '../db/pool.ts';

/** What a handler may use when it starts: the configuration, the service's pool, a logger. */
export interface HandlerContext {
  env: Env;
  pool: Pool;
  log: Logger;
}

/** The job a payload came with. */
export interface JobInfo {
  id: string;
  queue: string;
  /** 1 for the first attempt. */
  attempt: number;
  /** Aborted when pg-boss gives up on the job (it expired); long handlers should stop then. */
  signal: AbortSignal;
  log: Logger;
}

export interface RunningHandler<P> {
  /** Runs one job. The result (a JSON object) becomes the job's output. */
  run(payload: P, job: JobInfo): Promise<Record<string, unknown>>;
  /** Called once when the service stops, after the last job. */
  close?(): Promise<void>;
}

export interface TaskHandler<P = unknown> {
  /** The queue this handler serves. */
  queue: string;
  /**
   * Why the handler cannot run with this configuration, or null when it can. While it cannot,
   * nothing claims the queue's jobs: they wait, and the log and /ready say why.
   */
  unavailable(env: Env): string | null;
  start(context: HandlerContext): RunningHandler<P> | Promise<RunningHandler<P>>;
}

/** Ties a handler to its queue's definition, so the payload type flows from the one to the other. */
export function defineHandler<P>(queue: TaskQueue<P>, handler: Omit<TaskHandler<P>, 'queue'>): TaskHandler<P> {
  return { queue: queue.name, ...handler };
}

/**
 * A failure a handler reports on purpose. `retryable: false` sends the job to the dead-letter
 * queue at once (a hard bounce, a 4xx from an API, a template that does not exist); any other
 * error, thrown or not, is retried with the queue's backoff until its retries run out.
 */
export class JobError extends Error {
  override name = 'JobError';
  readonly code: string;
  readonly retryable: boolean;
  readonly detail: Record<string, unknown>;

  constructor(code: string, message: string, options: { retryable: boolean; detail?: Record<string, unknown>; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable;
    this.detail = options.detail ?? {};
  }
}

export function notRetryable(code: string, message: string, detail?: Record<string, unknown>): JobError {
  return new JobError(code, message, { retryable: false, ...(detail ? { detail } : {}) });
}

export function retryable(code: string, message: string, detail?: Record<string, unknown>): JobError {
  return new JobError(code, message, { retryable: true, ...(detail ? { detail } : {}) });
}
