-- What operators read: the stats views over pg-boss's own tables, and the one operation they need
-- from psql as much as from the API, replaying dead letters.
--
-- Written against pg-boss schema version 46. Every count is computed from the job rows when the
-- view is read (exact and current, no monitor pass to wait for), through pg-boss's own partial
-- indexes, so a read costs what the queues hold in flight and what finished in the last hour, never
-- what they retain:
--   job_i14 (name, state, blocked, start_after) WHERE state IN (created, retry, active, failed)
--            the gauges, index-only
--   job_i11 (name, priority DESC, created_on, start_after) WHERE state < active AND NOT blocked
--            the oldest waiting job, one index probe per distinct priority
--   job_i16 (name, completed_on) WHERE completed_on IS NOT NULL
--            what finished in the last hour, and per minute for queue.throughput
-- No index is added to pgboss tables (pg-boss reports unknown indexes as schema drift);
-- bench/stats-views.ts measures queue.stats on 1,000,000 job rows and prints the plan.
--
-- queue.stats and queue.throughput read through SECURITY DEFINER functions that also turn JIT off:
-- their plans cost enough on paper for JIT to kick in, and compiling them took 700 ms of a query
-- that runs in 50. The other views run with their owner's rights. Either way a role granted the
-- views (queue.grant_monitoring, at the end of this file) reads them without any right on pgboss,
-- and the schema queue is closed to PUBLIC (001), so anon and authenticated cannot read them.

-- What each queue holds right now, one row per queue: the jobs in each live state, the jobs
-- waiting in the dead-letter queue it feeds, and when its oldest waiting job was created. Cheap
-- enough for every Prometheus scrape (/metrics reads it): it costs what the queues hold in flight.
-- The oldest waiting job is the one created longest ago among those queued or retrying (a job
-- deferred to a later start is not late); its age is that queue's sync lag.
CREATE FUNCTION queue.queue_gauges() RETURNS TABLE (
  queue text,
  kind text,
  dead_letter_queue text,
  queued integer,
  deferred integer,
  retrying integer,
  active integer,
  failed integer,
  dead_lettered integer,
  oldest_waiting_since timestamptz
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
SELECT
  q.name,
  CASE WHEN EXISTS (SELECT 1 FROM pgboss.queue s WHERE s.dead_letter = q.name) THEN 'dead-letter' ELSE 'queue' END,
  q.dead_letter,
  COALESCE(live.queued, 0),
  COALESCE(live.deferred, 0),
  COALESCE(live.retrying, 0),
  COALESCE(live.active, 0),
  COALESCE(live.failed, 0),
  COALESCE(dead.waiting, 0),
  oldest.created_on
FROM pgboss.queue q
LEFT JOIN LATERAL (
  SELECT
    count(*) FILTER (WHERE j.state = 'created' AND j.start_after <= now())::int AS queued,
    count(*) FILTER (WHERE j.state = 'created' AND j.start_after > now())::int AS deferred,
    count(*) FILTER (WHERE j.state = 'retry')::int AS retrying,
    count(*) FILTER (WHERE j.state = 'active')::int AS active,
    count(*) FILTER (WHERE j.state = 'failed')::int AS failed
  FROM pgboss.job j
  WHERE j.name = q.name AND j.state IN ('created', 'retry', 'active', 'failed')
) live ON true
LEFT JOIN LATERAL (
  SELECT count(*)::int AS waiting
  FROM pgboss.job d
  WHERE d.name = q.dead_letter AND d.state IN ('created', 'retry')
) dead ON q.dead_letter IS NOT NULL
LEFT JOIN LATERAL (
  -- A loose index scan of job_i11: its leading column after the name is priority, so the oldest
  -- job of each priority is one probe, and the priorities are walked one probe each. Reading
  -- min(created_on) straight would scan every waiting job, a million of them in an outage.
  WITH RECURSIVE priorities (priority) AS (
    (SELECT j.priority FROM pgboss.job j
     WHERE j.name = q.name AND j.state < 'active' AND NOT j.blocked
     ORDER BY j.priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT j.priority FROM pgboss.job j
            WHERE j.name = q.name AND j.state < 'active' AND NOT j.blocked AND j.priority < p.priority
            ORDER BY j.priority DESC LIMIT 1)
    FROM priorities p
    WHERE p.priority IS NOT NULL
  )
  SELECT min(first.created_on) AS created_on
  FROM priorities p
  CROSS JOIN LATERAL (
    SELECT j.created_on FROM pgboss.job j
    WHERE j.name = q.name AND j.state < 'active' AND NOT j.blocked AND j.priority = p.priority
      AND NOT (j.state = 'created' AND j.start_after > now())
    ORDER BY j.created_on
    LIMIT 1
  ) first
  WHERE p.priority IS NOT NULL
) oldest ON true
WHERE q.name NOT LIKE '\_\_pgboss\_\_%' -- pg-boss's own internal queues
$$;
REVOKE ALL ON FUNCTION queue.queue_gauges() FROM PUBLIC;

-- queue.stats: the gauges, and what went through each queue in the last hour. Wait time runs from
-- when a job could run (created, or its start-after or retry time) to when its last attempt
-- started; run time from that start to when it finished. Both are over the jobs that finished
-- (completed or failed) in the last hour, at most the 10,000 most recent, so a burst of a million
-- jobs does not sort a million rows on every read.
CREATE FUNCTION queue.queue_stats() RETURNS TABLE (
  queue text,
  kind text,
  dead_letter_queue text,
  queued integer,
  deferred integer,
  retrying integer,
  active integer,
  failed integer,
  dead_lettered integer,
  completed_last_hour integer,
  failed_last_hour integer,
  jobs_per_minute double precision,
  oldest_waiting_seconds double precision,
  oldest_waiting_since timestamptz,
  wait_p50_seconds double precision,
  wait_p95_seconds double precision,
  run_p50_seconds double precision,
  run_p95_seconds double precision
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
SELECT
  g.queue, g.kind, g.dead_letter_queue, g.queued, g.deferred, g.retrying, g.active, g.failed, g.dead_lettered,
  COALESCE(recent.completed_last_hour, 0),
  COALESCE(recent.failed_last_hour, 0),
  round(COALESCE(recent.finished_last_5_minutes, 0) / 5.0, 1)::double precision,
  round(date_part('epoch', now() - g.oldest_waiting_since)::numeric, 3)::double precision,
  g.oldest_waiting_since,
  round(latency.wait_p50::numeric, 3)::double precision,
  round(latency.wait_p95::numeric, 3)::double precision,
  round(latency.run_p50::numeric, 3)::double precision,
  round(latency.run_p95::numeric, 3)::double precision
FROM queue.queue_gauges() g
LEFT JOIN LATERAL (
  SELECT
    count(*) FILTER (WHERE j.state = 'completed')::int AS completed_last_hour,
    count(*) FILTER (WHERE j.state = 'failed')::int AS failed_last_hour,
    count(*) FILTER (WHERE j.state IN ('completed', 'failed') AND j.completed_on > now() - interval '5 minutes')::int AS finished_last_5_minutes
  FROM pgboss.job j
  WHERE j.name = g.queue AND j.completed_on > now() - interval '1 hour'
) recent ON true
LEFT JOIN LATERAL (
  SELECT
    percentile_cont(0.5) WITHIN GROUP (ORDER BY f.wait) AS wait_p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY f.wait) AS wait_p95,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY f.run) AS run_p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY f.run) AS run_p95
  FROM (
    SELECT
      GREATEST(date_part('epoch', j.started_on - GREATEST(j.created_on, j.start_after)), 0) AS wait,
      GREATEST(date_part('epoch', j.completed_on - j.started_on), 0) AS run
    FROM pgboss.job j
    WHERE j.name = g.queue AND j.completed_on > now() - interval '1 hour'
      AND j.state IN ('completed', 'failed') AND j.started_on IS NOT NULL
    ORDER BY j.completed_on DESC
    LIMIT 10000
  ) f
) latency ON true
$$;
REVOKE ALL ON FUNCTION queue.queue_stats() FROM PUBLIC;

CREATE VIEW queue.stats AS SELECT * FROM queue.queue_stats();

-- Per queue and minute, the jobs that completed and failed. queue.throughput covers the last 24
-- hours (as far as retention keeps them: completed jobs stay COMPLETED_RETENTION_SECONDS);
-- queue.throughput_since(t) starts at t instead (at most 7 days back), which is what a chart of the
-- last hour should call. Every minute has a row, zero when nothing finished, so it charts without
-- gaps; each minute is one range read of job_i16.
CREATE FUNCTION queue.throughput_since(since timestamptz) RETURNS TABLE (
  queue text,
  minute timestamptz,
  completed integer,
  failed integer
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
SELECT
  q.name AS queue,
  m.minute,
  COALESCE(c.completed, 0) AS completed,
  COALESCE(c.failed, 0) AS failed
FROM pgboss.queue q
CROSS JOIN generate_series(
  date_trunc('minute', GREATEST(since, now() - interval '7 days')),
  date_trunc('minute', now()),
  interval '1 minute'
) AS m(minute)
LEFT JOIN LATERAL (
  SELECT
    count(*) FILTER (WHERE j.state = 'completed')::int AS completed,
    count(*) FILTER (WHERE j.state = 'failed')::int AS failed
  FROM pgboss.job j
  WHERE j.name = q.name AND j.completed_on >= m.minute AND j.completed_on < m.minute + interval '1 minute'
) c ON true
WHERE q.name NOT LIKE '\_\_pgboss\_\_%'
ORDER BY q.name, m.minute;
$$;
REVOKE ALL ON FUNCTION queue.throughput_since(timestamptz) FROM PUBLIC;

CREATE VIEW queue.throughput AS SELECT * FROM queue.throughput_since(now() - interval '1439 minutes');

-- A job's last error as one line of text, from the outputs this service and pg-boss write:
-- the sync worker's {status, error, reason}, pg-boss's {value: {message}} for expired jobs, and a
-- thrown Error's {message}. Anything else is shown as its JSON.
CREATE FUNCTION queue.error_text(output jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE
    WHEN output IS NULL OR jsonb_typeof(output) = 'null' THEN NULL
    WHEN jsonb_typeof(output) = 'string' THEN output #>> '{}'
    WHEN output ? 'reason' THEN concat_ws(': ', output ->> 'error', output ->> 'reason')
    WHEN output ? 'message' THEN output ->> 'message'
    WHEN output -> 'value' ? 'message' THEN output -> 'value' ->> 'message'
    ELSE output::text
  END
$$;

-- The latest failed attempt of every job that is retrying or has failed for good, newest first.
-- pg-boss keeps one row per job, so an earlier attempt's error is replaced by the next one's:
-- `attempt` says which attempt this error is from. A retrying job has no failure time of its own,
-- only when that attempt started and when the next one is due.
CREATE VIEW queue.recent_failures AS
SELECT
  j.name AS queue,
  j.id AS job_id,
  j.state::text AS state,
  j.data,
  queue.error_text(j.output) AS error,
  j.output,
  j.retry_count + 1 AS attempt,
  j.retry_limit + 1 AS max_attempts,
  j.started_on AS attempt_started_at,
  CASE WHEN j.state = 'failed' THEN j.completed_on END AS failed_at,
  CASE WHEN j.state = 'retry' THEN j.start_after END AS next_attempt_at,
  j.dead_letter AS dead_letter_queue
FROM pgboss.job j
WHERE j.state IN ('retry', 'failed') AND j.output IS NOT NULL
ORDER BY COALESCE(j.completed_on, j.started_on, j.created_on) DESC;

-- Jobs waiting in dead-letter queues: which queue they came from, their data (for a sync job,
-- {table, id}: the row), the error of their last attempt, how many attempts were made and when
-- they were dead-lettered. queue.replay_dead_letters() sends them back.
CREATE VIEW queue.dead_letters AS
SELECT
  j.id AS job_id,
  j.name AS dead_letter_queue,
  COALESCE(j.source_name, d.source) AS source_queue,
  j.data,
  queue.error_text(COALESCE(j.source_output, j.output)) AS error,
  COALESCE(j.source_output, j.output) AS output,
  COALESCE(j.source_retry_count, j.retry_count) + 1 AS attempts,
  j.source_id AS source_job_id,
  j.source_created_on AS first_enqueued_at,
  j.created_on AS dead_lettered_at
FROM (
  SELECT DISTINCT ON (s.dead_letter) s.dead_letter AS name, s.name AS source
  FROM pgboss.queue s
  WHERE s.dead_letter IS NOT NULL
  ORDER BY s.dead_letter, s.name
) d
JOIN pgboss.job j ON j.name = d.name AND j.state IN ('created', 'retry');

-- Replays the dead letters of a search-sync queue (all of them, or the given job ids) as fresh sync
-- jobs of their rows. The jobs carry identity, not state: the new job reads the row as it is when it
-- runs, so nothing a dead letter stood for is lost, and a row that already has a job waiting joins
-- it exactly as a trigger's write would (queue.enqueue_sync), rather than colliding with it under
-- the stately policy the way pg-boss's redrive does. The dead letters are deleted in the same
-- transaction as the enqueue: either both happen or neither.
--
-- Dead letters whose data names no row (no `id`) stay where they are and come back in skipped_ids.
-- Wakes the queue's workers when it created jobs.
CREATE FUNCTION queue.replay_dead_letters(source_queue text, job_ids uuid[] DEFAULT NULL)
RETURNS TABLE (replayed_ids uuid[], jobs_created integer, skipped_ids uuid[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dead_queue text;
  table_name text;
  ids uuid[];
  keys text[];
  replayable uuid[];
  created integer := 0;
BEGIN
  SELECT q.dead_letter INTO dead_queue FROM pgboss.queue q WHERE q.name = source_queue;
  IF dead_queue IS NULL THEN
    RAISE EXCEPTION 'queue-service: % is not a queue with a dead-letter queue', source_queue
      USING ERRCODE = 'undefined_object';
  END IF;
  table_name := substring(source_queue FROM '^search-sync\.(.+)$');
  IF table_name IS NULL OR to_regprocedure(format('queue.%I(text[])', table_name || '_enqueue')) IS NULL THEN
    RAISE EXCEPTION 'queue-service: % is not a search-sync queue; replay its dead letters with pg-boss''s redrive', source_queue
      USING ERRCODE = 'undefined_object';
  END IF;

  WITH locked AS (
    SELECT j.id, NULLIF(j.data ->> 'id', '') AS key
    FROM pgboss.job j
    WHERE j.name = dead_queue
      AND j.state IN ('created', 'retry')
      AND COALESCE(j.source_name, source_queue) = source_queue
      AND (job_ids IS NULL OR j.id = ANY (job_ids))
    FOR UPDATE
  )
  SELECT array_agg(l.id), array_agg(DISTINCT l.key) FILTER (WHERE l.key IS NOT NULL),
         array_agg(l.id) FILTER (WHERE l.key IS NOT NULL)
  INTO ids, keys, replayable
  FROM locked l;

  IF keys IS NOT NULL THEN
    created := queue.enqueue_sync(table_name, keys);
    DELETE FROM pgboss.job j WHERE j.name = dead_queue AND j.id = ANY (replayable);
  END IF;
  IF created > 0 THEN
    PERFORM queue.wake(source_queue);
  END IF;

  replayed_ids := COALESCE(replayable, '{}');
  jobs_created := created;
  skipped_ids := ARRAY(SELECT i FROM unnest(ids) AS i EXCEPT SELECT r FROM unnest(replayed_ids) AS r);
  RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION queue.replay_dead_letters(text, uuid[]) FROM PUBLIC;

REVOKE ALL ON queue.stats, queue.throughput, queue.recent_failures, queue.dead_letters FROM PUBLIC;

-- Read access to the stats views for a monitoring role: SELECT on the views and EXECUTE on the
-- functions behind them, nothing on pgboss or on the functions that change jobs. Run it again for a
-- role created after this migration:  SELECT queue.grant_monitoring('queue_monitor');
CREATE FUNCTION queue.grant_monitoring(role_name regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA queue TO %s', role_name);
  EXECUTE format('GRANT SELECT ON queue.stats, queue.throughput, queue.recent_failures, queue.dead_letters TO %s', role_name);
  EXECUTE format('GRANT EXECUTE ON FUNCTION queue.queue_gauges(), queue.queue_stats(), queue.throughput_since(timestamptz), queue.error_text(jsonb) TO %s', role_name);
END
$$;
REVOKE ALL ON FUNCTION queue.grant_monitoring(regrole) FROM PUBLIC;

DO $$
BEGIN
  IF to_regrole('queue_monitor') IS NOT NULL THEN
    PERFORM queue.grant_monitoring('queue_monitor');
  END IF;
END
$$;
