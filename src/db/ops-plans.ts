// The SQL of the operations surface (stats, the jobs API, dead letters, metrics), one statement
// each. Job rows are read from pg-boss's tables as pg-boss 12.38.0 (schema 46) writes them; what
// changes jobs does what pg-boss's own statements do (plans.js: retryJobs, cancelJobs) with the
// narrower states this API promises, and replay lives in SQL (queue.replay_dead_letters) so that
// psql gets it too.
import type { Statement } from './plans.ts';

const statement = (name: string, text: string): Statement => ({ name, text });

export const queueStats = statement('ops-queue-stats', 'SELECT * FROM queue.stats ORDER BY queue');

export const throughputSince = statement(
  'ops-throughput-since',
  `SELECT queue, minute, completed, failed
   FROM queue.throughput_since(now() - $1::int * interval '1 minute')`,
);

/** The columns of a job as the API shows it, from pgboss.job aliased `j`. */
const JOB_COLUMNS = `
  j.id, j.name AS queue, j.state::text AS state, j.data, j.priority,
  j.retry_count + 1 AS attempt, j.retry_limit AS "retryLimit", j.singleton_key AS "singletonKey",
  j.start_after AS "startAfter", j.created_on AS "createdOn", j.started_on AS "startedOn",
  j.completed_on AS "completedOn", j.output, queue.error_text(COALESCE(j.output, j.source_output)) AS error,
  j.dead_letter AS "deadLetter", j.source_name AS "sourceQueue", j.source_id AS "sourceJobId",
  (extract(epoch FROM j.created_on) * 1000000)::bigint AS "cursorMicros"`;

/**
 * One job by id alone. The job table's key is (name, id), so the name list lets every partition
 * answer with an index probe per queue instead of a scan of its whole primary key.
 */
export const jobById = statement(
  'ops-job-by-id',
  `SELECT ${JOB_COLUMNS} FROM pgboss.job j
   WHERE j.name = ANY (ARRAY(SELECT q.name FROM pgboss.queue q)) AND j.id = $1::uuid`,
);

export interface JobListFilter {
  queues: string[];
  states: string[] | null;
  /** The created_on (in microseconds) and id of the last job of the previous page. */
  after: { micros: string; id: string } | null;
  limit: number;
}

/**
 * Newest first, paged by (created_on, id). Built from fixed fragments, so each filter combination
 * gets a plan that uses it (a single statement with `$n IS NULL OR ...` would plan around all of
 * them at once); only values travel as parameters.
 */
export function listJobs(filter: JobListFilter): { text: string; values: unknown[] } {
  const values: unknown[] = [filter.queues];
  const where = ['j.name = ANY ($1::text[])'];
  if (filter.states) {
    values.push(filter.states);
    where.push(`j.state = ANY ($${values.length}::pgboss.job_state[])`);
  }
  if (filter.after) {
    values.push(filter.after.micros, filter.after.id);
    where.push(`(j.created_on, j.id) < (timestamptz 'epoch' + $${values.length - 1}::bigint * interval '1 microsecond', $${values.length}::uuid)`);
  }
  values.push(filter.limit);
  return {
    text: `SELECT ${JOB_COLUMNS} FROM pgboss.job j WHERE ${where.join(' AND ')}
           ORDER BY j.created_on DESC, j.id DESC LIMIT $${values.length}`,
    values,
  };
}

export interface DeadLetterFilter {
  deadLetterQueues: string[];
  after: { micros: string; id: string } | null;
  limit: number;
}

export function listDeadLetters(filter: DeadLetterFilter): { text: string; values: unknown[] } {
  const values: unknown[] = [filter.deadLetterQueues];
  const where = ['d.dead_letter_queue = ANY ($1::text[])'];
  if (filter.after) {
    values.push(filter.after.micros, filter.after.id);
    where.push(`(d.dead_lettered_at, d.job_id) < (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', $3::uuid)`);
  }
  values.push(filter.limit);
  return {
    text: `SELECT d.job_id AS id, d.dead_letter_queue AS "deadLetterQueue", d.source_queue AS "sourceQueue", d.data,
                  d.error, d.output, d.attempts, d.source_job_id AS "sourceJobId",
                  d.first_enqueued_at AS "firstEnqueuedAt", d.dead_lettered_at AS "deadLetteredAt",
                  (extract(epoch FROM d.dead_lettered_at) * 1000000)::bigint AS "cursorMicros"
           FROM queue.dead_letters d WHERE ${where.join(' AND ')}
           ORDER BY d.dead_lettered_at DESC, d.job_id DESC LIMIT $${values.length}`,
    values,
  };
}

/**
 * A failed job goes back to `retry` with one more attempt allowed, as pg-boss's retryJobs does.
 * Only `failed`: a job that is waiting, running or done has nothing to retry.
 */
export const retryFailedJob = statement(
  'ops-retry-failed-job',
  `UPDATE pgboss.job AS j
   SET state = 'retry', retry_limit = retry_limit + 1, completed_on = NULL, start_after = GREATEST(start_after, now())
   WHERE name = $1 AND id = $2::uuid AND state = 'failed'
   RETURNING ${JOB_COLUMNS}`,
);

/**
 * The dead-letter copy of a failed job (pg-boss inserts one when the job fails for good): once the
 * job is retried it stands for nothing, and leaving it would have it replayed a second time.
 */
export const deleteDeadLetterCopies = statement(
  'ops-delete-dead-letter-copies',
  `DELETE FROM pgboss.job
   WHERE name = $1 AND source_id = $2::uuid AND state IN ('created', 'retry')`,
);

/** Cancels a job that has not started: pg-boss's cancelJobs, without its reach into active jobs. */
export const cancelQueuedJob = statement(
  'ops-cancel-queued-job',
  `UPDATE pgboss.job AS j SET state = 'cancelled', completed_on = now()
   WHERE name = $1 AND id = $2::uuid AND state IN ('created', 'retry')
   RETURNING ${JOB_COLUMNS}`,
);

/** The enqueue the triggers do, for one row: returns how many jobs it created (0 or 1). */
export const enqueueSyncRow = statement('ops-enqueue-sync-row', 'SELECT queue.enqueue_sync($1, ARRAY[$2::text]) AS created');

/** The job waiting in `created` for a row (the one enqueue_sync made or joined, locked by it). */
export const waitingJobForKey = statement(
  'ops-waiting-job-for-key',
  `SELECT id FROM pgboss.job WHERE name = $1 AND singleton_key = $2 AND state = 'created' LIMIT 1`,
);

export const wakeQueue = statement('ops-wake-queue', 'SELECT queue.wake($1)');

export const replayDeadLetters = statement(
  'ops-replay-dead-letters',
  `SELECT replayed_ids AS "replayedIds", jobs_created AS "jobsCreated", skipped_ids AS "skippedIds"
   FROM queue.replay_dead_letters($1, $2::uuid[])`,
);

/** The same for a task queue (email, export, ...): each dead letter becomes a new job with its payload. */
export const replayTaskDeadLetters = statement(
  'ops-replay-task-dead-letters',
  `SELECT replayed_ids AS "replayedIds", jobs_created AS "jobsCreated", skipped_ids AS "skippedIds"
   FROM queue.replay_task_dead_letters($1, $2::uuid[])`,
);

/**
 * The gauges of every queue for /metrics (queue.queue_gauges(): the live jobs per state, the dead
 * letters and the oldest waiting job), which cost what the queues hold in flight, not what they
 * retain.
 */
export const queueGauges = statement(
  'ops-queue-gauges',
  `SELECT queue, queued, deferred, retrying, active, failed, dead_lettered,
          date_part('epoch', now() - oldest_waiting_since) AS oldest_waiting_seconds
   FROM queue.queue_gauges() ORDER BY queue`,
);
