// What the jobs API does to pg-boss's jobs: read them, enqueue, retry, cancel, and replay dead
// letters. Every function reports a failure the caller can act on as an OperationError, whose
// message names the job or queue and says what to do; anything else is a fault.
import type { PgBoss } from 'pg-boss';
import type { QueueConfig } from '../config/queues.ts';
import * as ops from './ops-plans.ts';
import type { Pool, PoolClient } from './pool.ts';

export type OperationFailure = 'bad_request' | 'not_found' | 'conflict' | 'unavailable';

export class OperationError extends Error {
  override name = 'OperationError';
  readonly failure: OperationFailure;

  constructor(failure: OperationFailure, message: string) {
    super(message);
    this.failure = failure;
  }
}

export interface JobView {
  id: string;
  queue: string;
  state: string;
  data: unknown;
  priority: number;
  /** Which attempt the job is on (or, when it failed, which one failed last): 1 for the first. */
  attempt: number;
  retryLimit: number;
  singletonKey: string | null;
  startAfter: Date;
  createdOn: Date;
  startedOn: Date | null;
  completedOn: Date | null;
  output: unknown;
  /** The last error as one line, when the job failed or is retrying. */
  error: string | null;
  deadLetter: string | null;
  sourceQueue: string | null;
  sourceJobId: string | null;
}

/** cursorMicros is a bigint, which node-postgres hands over as text unless told otherwise. */
type JobRow = JobView & { cursorMicros: string | number };

export interface Page<T> {
  items: T[];
  /** Pass back as `cursor` for the next page; null on the last one. */
  nextCursor: string | null;
}

const POLICY_CONFLICT = '23505';

/** Opaque to clients: the created_on (µs) and id of the last item of a page. */
export function encodeCursor(micros: string | number, id: string): string {
  return Buffer.from(`${micros}:${id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { micros: string; id: string } {
  const [micros, id, extra] = Buffer.from(cursor, 'base64url').toString().split(':');
  if (extra !== undefined || !micros || !/^\d{1,17}$/.test(micros) || !id || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) {
    throw new OperationError('bad_request', 'cursor is not one this API returned: pass the nextCursor of the previous page unchanged');
  }
  return { micros, id };
}

/** `rows` were read with limit + 1, so a next page exists exactly when the extra row came back. */
function page<R extends { cursorMicros: string | number; id: string }, T>(rows: R[], limit: number, view: (row: R) => T): Page<T> {
  const items = rows.slice(0, limit);
  const last = rows.length > limit ? items[items.length - 1] : undefined;
  return { items: items.map(view), nextCursor: last ? encodeCursor(last.cursorMicros, last.id) : null };
}

function jobView({ cursorMicros: _, ...job }: JobRow): JobView {
  return job;
}

async function inTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

export async function getJob(pool: Pool, id: string): Promise<JobView | null> {
  const { rows } = await pool.query<JobRow>({ ...ops.jobById, values: [id] });
  return rows[0] ? jobView(rows[0]) : null;
}

async function requireJob(pool: Pool, id: string): Promise<JobView> {
  const job = await getJob(pool, id);
  if (!job) throw new OperationError('not_found', `no job with id ${id}`);
  return job;
}

export interface ListJobsOptions {
  queues: string[];
  states: string[] | null;
  cursor: string | null;
  limit: number;
}

export async function listJobs(pool: Pool, options: ListJobsOptions): Promise<Page<JobView>> {
  const after = options.cursor ? decodeCursor(options.cursor) : null;
  const { text, values } = ops.listJobs({ queues: options.queues, states: options.states, after, limit: options.limit + 1 });
  const { rows } = await pool.query<JobRow>(text, values);
  return page(rows, options.limit, jobView);
}

export interface EnqueueOptions {
  priority?: number;
  /** An ISO 8601 date-time, or seconds from now. */
  startAfter?: string | number;
  singletonKey?: string;
  retryLimit?: number;
}

export interface Enqueued {
  id: string;
  /** True when the job joined one already waiting for the same row instead of adding one. */
  coalesced: boolean;
}

/**
 * Enqueues a job whose data the caller validated against the queue's schema. A search-sync job
 * with no options goes through queue.enqueue_sync, so it coalesces with a job already waiting for
 * its row exactly like a trigger's write; with options it is sent through pg-boss, keyed by the
 * row, and a row with a job already waiting is a conflict (the options could not apply to it).
 */
export async function enqueue(pool: Pool, boss: PgBoss, queue: QueueConfig, data: unknown, options: EnqueueOptions): Promise<Enqueued> {
  const table = queue.kind === 'sync' ? (data as { table: string }).table : null;
  const rowId = table ? (data as { id: string }).id : null;
  if (rowId !== null && options.singletonKey !== undefined && options.singletonKey !== rowId) {
    throw new OperationError('bad_request', `options.singletonKey must be data.id ("${rowId}") or left out: search-sync jobs are keyed by their row, so two jobs of one row never run at once`);
  }
  const scheduled = options.priority !== undefined || options.startAfter !== undefined || options.retryLimit !== undefined;
  if (table && rowId !== null && !scheduled) return enqueueSyncRow(pool, queue.name, table, rowId);

  const singletonKey = rowId ?? options.singletonKey;
  // pg-boss checks every option it is given, so one that was not asked for must not be there at all.
  const sendOptions = Object.fromEntries(
    Object.entries({ priority: options.priority, startAfter: options.startAfter, retryLimit: options.retryLimit, singletonKey }).filter(([, v]) => v !== undefined),
  );
  const id = await boss.send(queue.name, data as object, sendOptions);
  if (id) return { id, coalesced: false };
  const waiting = singletonKey === undefined ? [] : (await pool.query<{ id: string }>({ ...ops.waitingJobForKey, values: [queue.name, singletonKey] })).rows;
  throw new OperationError(
    'conflict',
    waiting[0]
      ? `${queue.name} already has job ${waiting[0].id} waiting with singleton key "${singletonKey}"; it was not replaced${rowId !== null ? ' (it syncs the row as it is when it runs)' : ''}`
      : `${queue.name} refused the job under its ${queue.options.policy} policy: a job with singleton key "${singletonKey ?? ''}" is already there`,
  );
}

async function enqueueSyncRow(pool: Pool, queue: string, table: string, rowId: string): Promise<Enqueued> {
  return inTransaction(pool, async (client) => {
    const { rows: [result] } = await client.query<{ created: number }>({ ...ops.enqueueSyncRow, values: [table, rowId] });
    // enqueue_sync either inserted the job or locked the one already waiting, so it is there.
    const { rows: [waiting] } = await client.query<{ id: string }>({ ...ops.waitingJobForKey, values: [queue, rowId] });
    if (!waiting) {
      throw new OperationError('unavailable', 'the change was held in queue.held_changes because the pgboss schema is not the version this release writes; run migrate, which enqueues it');
    }
    await client.query({ ...ops.wakeQueue, values: [queue] });
    return { id: waiting.id, coalesced: result?.created === 0 };
  });
}

/** Gives a failed job one more attempt; its dead-letter copy goes, since the retry replaces it. */
export async function retryJob(pool: Pool, id: string): Promise<JobView> {
  const job = await requireJob(pool, id);
  if (job.state !== 'failed') {
    throw new OperationError('conflict', `job ${id} is ${job.state}: only a failed job can be retried${job.state === 'retry' ? ' (this one is already waiting to retry)' : ''}`);
  }
  // The job as the retry left it: once committed, a worker may claim it at once.
  try {
    return await inTransaction(pool, async (client) => {
      const { rows: [retried] } = await client.query<JobRow>({ ...ops.retryFailedJob, values: [job.queue, id] });
      if (!retried) throw new OperationError('conflict', `job ${id} stopped being failed while it was being retried; read it again`);
      if (job.deadLetter) await client.query({ ...ops.deleteDeadLetterCopies, values: [job.deadLetter, id] });
      await client.query({ ...ops.wakeQueue, values: [job.queue] });
      return jobView(retried);
    });
  } catch (err) {
    if ((err as { code?: string }).code === POLICY_CONFLICT) {
      throw new OperationError('conflict', `${job.queue} already has a job with singleton key "${job.singletonKey}" waiting to retry; retry this one after it has run`);
    }
    throw err;
  }
}

/** Cancels a job that is waiting (created or retry); a running or finished job is a conflict. */
export async function cancelJob(pool: Pool, id: string): Promise<JobView> {
  let job = await requireJob(pool, id);
  if (job.state === 'created' || job.state === 'retry') {
    const { rows: [cancelled] } = await pool.query<JobRow>({ ...ops.cancelQueuedJob, values: [job.queue, id] });
    if (cancelled) return jobView(cancelled);
    job = await requireJob(pool, id); // a worker claimed it in between
  }
  throw new OperationError('conflict', `job ${id} is ${job.state}: only a queued job (created or retry) can be cancelled`);
}

export interface DeadLetterView {
  id: string;
  deadLetterQueue: string;
  sourceQueue: string | null;
  data: unknown;
  error: string | null;
  output: unknown;
  attempts: number;
  sourceJobId: string | null;
  firstEnqueuedAt: Date | null;
  deadLetteredAt: Date;
}

export async function listDeadLetters(pool: Pool, deadLetterQueues: string[], cursor: string | null, limit: number): Promise<Page<DeadLetterView>> {
  const after = cursor ? decodeCursor(cursor) : null;
  const { text, values } = ops.listDeadLetters({ deadLetterQueues, after, limit: limit + 1 });
  const { rows } = await pool.query<DeadLetterView & { cursorMicros: string | number }>(text, values);
  return page(rows, limit, ({ cursorMicros: _, ...row }) => row);
}

export interface ReplayResult {
  queue: string;
  deadLetterQueue: string;
  /** Dead letters moved back (deleted from the dead-letter queue). */
  replayed: number;
  replayedIds: string[];
  /** New jobs; fewer than replayed when rows already had a job waiting, or repeat. */
  jobsCreated: number;
  /** Dead letters left in place because their data names no row. */
  skippedIds: string[];
  /** Requested ids that are not waiting in the dead-letter queue. */
  notFoundIds: string[];
}

/**
 * Replays a queue's dead letters (all, or `ids`): a search-sync queue's through
 * queue.replay_dead_letters (fresh jobs of their rows), a task queue's through
 * queue.replay_task_dead_letters (new jobs with the same payloads).
 */
export async function replayDeadLetters(pool: Pool, source: QueueConfig, deadLetterQueue: string, ids: string[] | null): Promise<ReplayResult> {
  if (source.kind !== 'sync' && source.kind !== 'task') {
    throw new OperationError('bad_request', `${source.name} is not a search-sync or task queue; replay supports those only`);
  }
  const plan = source.kind === 'sync' ? ops.replayDeadLetters : ops.replayTaskDeadLetters;
  const { rows: [result] } = await pool.query<{ replayedIds: string[]; jobsCreated: number; skippedIds: string[] }>({
    ...plan,
    values: [source.name, ids],
  });
  const { replayedIds, jobsCreated, skippedIds } = result!;
  const found = new Set([...replayedIds, ...skippedIds]);
  return {
    queue: source.name,
    deadLetterQueue,
    replayed: replayedIds.length,
    replayedIds,
    jobsCreated,
    skippedIds,
    notFoundIds: (ids ?? []).filter((id) => !found.has(id)),
  };
}

export interface QueueStatsRow {
  queue: string;
  kind: string;
  dead_letter_queue: string | null;
  queued: number;
  deferred: number;
  retrying: number;
  active: number;
  failed: number;
  dead_lettered: number;
  completed_last_hour: number;
  failed_last_hour: number;
  jobs_per_minute: number;
  oldest_waiting_seconds: number | null;
  oldest_waiting_since: Date | null;
  wait_p50_seconds: number | null;
  wait_p95_seconds: number | null;
  run_p50_seconds: number | null;
  run_p95_seconds: number | null;
}

export async function readStats(pool: Pool): Promise<QueueStatsRow[]> {
  return (await pool.query<QueueStatsRow>(ops.queueStats)).rows;
}

export interface ThroughputRow {
  queue: string;
  minute: Date;
  completed: number;
  failed: number;
}

export type QueueGaugeRow = Pick<QueueStatsRow, 'queue' | 'queued' | 'deferred' | 'retrying' | 'active' | 'failed' | 'dead_lettered' | 'oldest_waiting_seconds'>;

export async function readGauges(pool: Pool): Promise<QueueGaugeRow[]> {
  return (await pool.query<QueueGaugeRow>(ops.queueGauges)).rows;
}

export async function readThroughput(pool: Pool, minutes: number): Promise<ThroughputRow[]> {
  return (await pool.query<ThroughputRow>({ ...ops.throughputSince, values: [minutes - 1] })).rows;
}
