// The SQL the task workers run, one named statement each (the functions are in
// migrations/007_task_queues.sql).
import type { Statement } from '../db/plans.ts';

const statement = (name: string, text: string): Statement => ({ name, text });

/** Up to $2 permits to start jobs of queue $1 now, under its shared rate limit. */
export const takePermits = statement(
  'take-permits',
  'SELECT granted, grant_id AS "grantId", retry_after_ms AS "retryAfterMs" FROM queue.take_permits($1, $2)',
);

/** Gives back the permits of grant $1 that found no job to start. */
export const returnPermits = statement('return-permits', 'SELECT queue.return_permits($1, $2)');

/**
 * Leaves an active job no retries, so the fail() that follows dead-letters it at once. pg-boss
 * does this for a perJobResults `deadletter` result inside work(); a worker that fetches its own
 * jobs (the rate-limited one) has only fail(). Fenced to the attempt it holds.
 */
export const exhaustRetries = statement(
  'exhaust-retries',
  `UPDATE pgboss.job SET retry_limit = retry_count
   WHERE name = $1 AND id = $2 AND retry_count = $3 AND state = 'active'`,
);

/** The rate limit `migrate` registered for queue $1 (the last migrate wins, for every process). */
export const registeredRateLimit = statement(
  'registered-rate-limit',
  'SELECT rate_limit AS "limit", rate_period_seconds AS "periodSeconds" FROM queue.task_queues WHERE name = $1',
);
