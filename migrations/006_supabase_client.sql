-- Enqueue and stats for application code on Supabase (Edge Functions, servers) through the
-- supabase-js client it already has: `supabase.schema('queue').rpc('send', ...)`, wrapped by the
-- typed client in src/supabase/client.ts. PostgREST serves functions of exposed schemas only, so
-- `queue` is listed in supabase/config.toml `[api] schemas` (on a hosted project: Project Settings, Data API,
-- Exposed schemas). Exposing it reveals nothing else: PostgREST runs every request as the key's
-- role, and only service_role gets USAGE on the schema and EXECUTE on these two functions.

-- Enqueues one job and returns its id. A search-sync queue goes through queue.enqueue_sync, so a
-- send joins the row's waiting job exactly as a trigger would (`created` is false then, and `id`
-- is the waiting job's). Any other queue gets the row pg-boss's send() writes (pg-boss 12.38.0,
-- plans.insertJobs), with the queue's settings unless an option overrides them.
CREATE FUNCTION queue.send(queue_name text, data jsonb DEFAULT '{}', options jsonb DEFAULT '{}', OUT id uuid, OUT created boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
  target pgboss.queue%ROWTYPE;
  sync_table text;
  allowed_options constant text[] := ARRAY[
    'priority', 'startAfter', 'singletonKey', 'singletonSeconds', 'retryLimit', 'retryDelay',
    'retryBackoff', 'retryDelayMax', 'expireInSeconds', 'deleteAfterSeconds', 'retentionSeconds'];
  whole_number_options constant text[] := ARRAY[
    'singletonSeconds', 'retryLimit', 'retryDelay', 'retryDelayMax', 'expireInSeconds',
    'deleteAfterSeconds', 'retentionSeconds'];
  bad text;
  start_after timestamptz;
BEGIN
  options := COALESCE(options, '{}');
  IF queue_name IS NULL OR queue_name = '' THEN
    RAISE EXCEPTION 'queue-service: queue_name is required' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO target FROM pgboss.queue q WHERE q.name = queue_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'queue-service: queue "%" does not exist', queue_name
      USING ERRCODE = 'undefined_object',
            HINT = 'queues: ' || (SELECT string_agg(q.name, ', ' ORDER BY q.name) FROM pgboss.queue q
                                  WHERE NOT EXISTS (SELECT 1 FROM pgboss.queue s WHERE s.dead_letter = q.name));
  END IF;
  IF EXISTS (SELECT 1 FROM pgboss.queue s WHERE s.dead_letter = queue_name) THEN
    RAISE EXCEPTION 'queue-service: "%" is a dead-letter queue; jobs arrive there only by failing, and replay moves them back', queue_name
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF data IS NULL OR jsonb_typeof(data) <> 'object' THEN
    RAISE EXCEPTION 'queue-service: data must be a JSON object, got %', COALESCE(jsonb_typeof(data), 'null')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF jsonb_typeof(options) <> 'object' THEN
    RAISE EXCEPTION 'queue-service: options must be a JSON object, got %', jsonb_typeof(options)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  sync_table := substring(queue_name FROM '^search-sync\.(.+)$');
  IF sync_table IS NOT NULL AND to_regprocedure(format('queue.%I(text[])', sync_table || '_enqueue')) IS NOT NULL THEN
    -- The job carries identity, not state: {table, id}, nothing else, and the queue's settings.
    IF options <> '{}' THEN
      RAISE EXCEPTION 'queue-service: % takes no options; its jobs use the queue''s settings', queue_name
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(k, ', ') INTO bad FROM jsonb_object_keys(data) AS k WHERE k NOT IN ('table', 'id');
    IF bad IS NOT NULL OR data->>'table' IS DISTINCT FROM sync_table
       OR jsonb_typeof(data->'id') IS DISTINCT FROM 'string' OR length(data->>'id') NOT BETWEEN 1 AND 512 THEN
      RAISE EXCEPTION 'queue-service: data for % must be {"table": "%", "id": "<primary key>"}%', queue_name, sync_table,
        CASE WHEN bad IS NOT NULL THEN format(' (unknown field %s)', bad) ELSE '' END
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    created := queue.enqueue_sync(sync_table, ARRAY[data->>'id']) > 0;
    -- The row's waiting job: just inserted, or the one this send joined (enqueue_sync holds its
    -- lock until this transaction ends, so no worker has claimed it in between).
    SELECT j.id INTO id FROM pgboss.job j
    WHERE j.name = queue_name AND j.singleton_key = data->>'id' AND j.state = 'created';
    IF created THEN
      PERFORM queue.wake(queue_name);
    END IF;
    RETURN;
  END IF;

  SELECT string_agg(k, ', ') INTO bad FROM jsonb_object_keys(options) AS k WHERE k <> ALL (allowed_options);
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'queue-service: unknown option %; options are %', bad, array_to_string(allowed_options, ', ')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT string_agg(k, ', ') INTO bad FROM jsonb_each(options) AS o(k, v)
  WHERE (k = ANY (whole_number_options) AND NOT (jsonb_typeof(v) = 'number' AND v::text ~ '^\d{1,9}$'))
     OR (k = 'priority' AND NOT (jsonb_typeof(v) = 'number' AND v::text ~ '^-?\d{1,9}$'))
     OR (k = 'retryBackoff' AND jsonb_typeof(v) <> 'boolean')
     OR (k = 'singletonKey' AND NOT (jsonb_typeof(v) = 'string' AND length(v #>> '{}') BETWEEN 1 AND 512))
     OR (k = 'startAfter' AND NOT (jsonb_typeof(v) = 'string' OR (jsonb_typeof(v) = 'number' AND v::text ~ '^\d{1,9}$')));
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'queue-service: invalid option %: priority is a whole number, retryBackoff true or false, singletonKey a string, startAfter an ISO timestamp or seconds, the others whole numbers of seconds or counts', bad
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- startAfter as pg-boss reads it: a timestamp string, or seconds from now.
  BEGIN
    start_after := CASE
      WHEN NOT options ? 'startAfter' THEN pgboss.job_now()
      WHEN jsonb_typeof(options->'startAfter') = 'number' THEN pgboss.job_now() + (options->>'startAfter')::int * interval '1s'
      ELSE (options->>'startAfter')::timestamptz
    END;
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
    RAISE EXCEPTION 'queue-service: invalid option startAfter: "%" is not an ISO timestamp', options->>'startAfter'
      USING ERRCODE = 'invalid_parameter_value';
  END;

  EXECUTE format($insert$
    INSERT INTO pgboss.%I (
      id, name, data, priority, start_after, created_on, singleton_key, singleton_on,
      expire_seconds, deletion_seconds, keep_until, retry_limit, retry_delay, retry_backoff,
      retry_delay_max, policy, dead_letter, heartbeat_seconds, blocked, blocking, pending_dependencies
    )
    SELECT
      gen_random_uuid(), q.name, $2, COALESCE(x.priority, 0), $3, pgboss.job_now(), x."singletonKey",
      CASE WHEN x."singletonSeconds" IS NOT NULL
        THEN 'epoch'::timestamp + '1s'::interval * (x."singletonSeconds"::float8 * floor(date_part('epoch', pgboss.job_now()) / x."singletonSeconds"::float8))
      END,
      COALESCE(x."expireInSeconds", q.expire_seconds), COALESCE(x."deleteAfterSeconds", q.deletion_seconds),
      $3 + COALESCE(x."retentionSeconds", q.retention_seconds) * interval '1s',
      COALESCE(x."retryLimit", q.retry_limit), COALESCE(x."retryDelay", q.retry_delay),
      COALESCE(x."retryBackoff", q.retry_backoff), COALESCE(x."retryDelayMax", q.retry_delay_max),
      q.policy, q.dead_letter, q.heartbeat_seconds, false, false, 0
    FROM pgboss.queue q, jsonb_to_record($4) AS x (
      priority integer, "singletonKey" text, "singletonSeconds" integer, "expireInSeconds" integer,
      "deleteAfterSeconds" integer, "retentionSeconds" integer, "retryLimit" integer, "retryDelay" integer,
      "retryBackoff" boolean, "retryDelayMax" integer
    )
    WHERE q.name = $1
    ON CONFLICT DO NOTHING
    RETURNING id
  $insert$, target.table_name) INTO id USING queue_name, data, start_after, options;

  -- NULL: a singleton or throttling rule of the queue refused the job, as boss.send() returns null.
  created := id IS NOT NULL;
  IF created AND target.notify AND start_after <= pgboss.job_now() THEN
    PERFORM queue.wake(queue_name);
  END IF;
END
$$;

-- Per-queue counts for dashboards and health checks in the app. Until the stats view of the
-- operations work (queue.stats) lands, these are pg-boss's own cached counts in pgboss.queue,
-- refreshed by the service's supervisor every SUPERVISE_INTERVAL_SECONDS; `counted_at` says when.
CREATE FUNCTION queue.get_stats()
RETURNS TABLE (
  queue text, policy text, dead_letter text, queued integer, active integer, deferred integer,
  failed integer, total integer, counted_at timestamptz
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT q.name, q.policy, q.dead_letter, q.queued_count, q.active_count, q.deferred_count,
         q.failed_count, q.total_count, q.monitor_on
  FROM pgboss.queue q
  ORDER BY q.name
$$;

-- Functions are executable by PUBLIC unless revoked one by one (a per-schema default privilege
-- cannot take a global default away). service_role gets USAGE on the schema below, so take EXECUTE
-- from PUBLIC on every function of the schema first. Later migrations revoke their own functions;
-- test/supabase-functions.test.ts fails when one is reachable by service_role.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA queue FROM PUBLIC;

-- service_role only. On Supabase the roles always exist; elsewhere (plain Postgres, the demo) the
-- grant happens where they do, and a database without them has nobody to grant to.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    GRANT USAGE ON SCHEMA queue TO service_role;
    GRANT EXECUTE ON FUNCTION queue.send(text, jsonb, jsonb), queue.get_stats() TO service_role;
  ELSE
    RAISE NOTICE 'queue-service: role service_role does not exist; queue.send and queue.get_stats are for the owner only';
  END IF;
  -- Supabase grants app roles EXECUTE on new functions in some schemas by default privileges;
  -- make sure none reached these.
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    REVOKE ALL ON FUNCTION queue.send(text, jsonb, jsonb), queue.get_stats() FROM anon;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    REVOKE ALL ON FUNCTION queue.send(text, jsonb, jsonb), queue.get_stats() FROM authenticated;
  END IF;
END
$$;
