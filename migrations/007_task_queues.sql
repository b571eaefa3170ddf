-- Task queues: the queues other than search sync (email, export, image cleanup, external API
-- calls, and any added later in src/config/task-queues.ts). This file adds
--   queue.task_queues        the registry `migrate` writes: each queue's payload schema and rate limit
--   queue.schema_errors()    the JSON Schema subset of src/config/json-schema.ts, in SQL
--   queue.send()             now refuses a payload its queue's schema does not allow
--   queue.take_permits()     a rate limit shared by every worker of every process
--   queue.enqueue_jobs()     many jobs in one statement, for triggers
--   a trigger on inventory_items that enqueues image-cleanup for deleted items with images
--
-- Written against pg-boss schema version 46, like 001.

CREATE TABLE queue.task_queues (
  name text PRIMARY KEY,
  description text NOT NULL,
  data_schema jsonb NOT NULL,
  rate_limit integer CHECK (rate_limit > 0),
  rate_period_seconds integer CHECK (rate_period_seconds > 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((rate_limit IS NULL) = (rate_period_seconds IS NULL))
);
REVOKE ALL ON queue.task_queues FROM PUBLIC;

-- Run by `migrate` for every task queue of the config, after the queue exists in pgboss.queue.
CREATE FUNCTION queue.register_task_queue(queue_name text, description text, data_schema jsonb, rate_limit integer, rate_period_seconds integer)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  INSERT INTO queue.task_queues AS t (name, description, data_schema, rate_limit, rate_period_seconds)
  VALUES (queue_name, description, data_schema, rate_limit, rate_period_seconds)
  ON CONFLICT (name) DO UPDATE SET
    description = EXCLUDED.description, data_schema = EXCLUDED.data_schema,
    rate_limit = EXCLUDED.rate_limit, rate_period_seconds = EXCLUDED.rate_period_seconds, updated_at = now()
  WHERE (t.description, t.data_schema, t.rate_limit, t.rate_period_seconds)
        IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.data_schema, EXCLUDED.rate_limit, EXCLUDED.rate_period_seconds)
$$;

-- What is wrong with `value` under `schema`, one message per problem, each naming where
-- (`data/to/0 must match format "email"`), worded like the API's (ajv's, as src/http reports them).
-- Only the keywords of src/config/json-schema.ts; config refuses a schema that uses others.
CREATE FUNCTION queue.schema_errors(schema jsonb, value jsonb, path text DEFAULT 'data') RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
  errors text[] := '{}';
  kind text := jsonb_typeof(value);
  types text[];
  s text;
  n numeric;
  k text;
  item jsonb;
  i integer := 0;
  email_pattern constant text := '^[a-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&''*+/=?^_`{|}~-]+)*@([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]*[a-z0-9])?$';
  uuid_pattern constant text := '^(urn:uuid:)?[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$';
BEGIN
  IF schema IS NULL OR schema = 'true' THEN
    RETURN errors;
  ELSIF schema = 'false' THEN
    RETURN ARRAY[format('%s is not allowed', path)];
  END IF;

  IF schema ? 'type' THEN
    types := CASE WHEN jsonb_typeof(schema->'type') = 'array'
                  THEN ARRAY(SELECT jsonb_array_elements_text(schema->'type'))
                  ELSE ARRAY[schema->>'type'] END;
    IF NOT (kind = ANY (types)
            OR (kind = 'number' AND 'integer' = ANY (types) AND (value #>> '{}')::numeric = trunc((value #>> '{}')::numeric))) THEN
      RETURN ARRAY[format('%s must be %s', path, array_to_string(types, ','))];
    END IF;
  END IF;
  IF schema ? 'enum' AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(schema->'enum') e WHERE e = value) THEN
    RETURN ARRAY[format('%s must be one of %s', path, (SELECT string_agg(e::text, ', ') FROM jsonb_array_elements(schema->'enum') e))];
  END IF;
  IF schema ? 'const' AND schema->'const' <> value THEN
    RETURN ARRAY[format('%s must be %s', path, schema->'const')];
  END IF;

  IF kind = 'string' THEN
    s := value #>> '{}';
    IF char_length(s) < (schema->>'minLength')::int THEN
      errors := errors || format('%s must NOT have fewer than %s characters', path, schema->>'minLength');
    END IF;
    IF char_length(s) > (schema->>'maxLength')::int THEN
      errors := errors || format('%s must NOT have more than %s characters', path, schema->>'maxLength');
    END IF;
    IF schema ? 'pattern' AND s !~ (schema->>'pattern') THEN
      errors := errors || format('%s must match pattern "%s"', path, schema->>'pattern');
    END IF;
    IF (schema->>'format' = 'email' AND s !~* email_pattern) OR (schema->>'format' = 'uuid' AND s !~* uuid_pattern) THEN
      errors := errors || format('%s must match format "%s"', path, schema->>'format');
    END IF;
  ELSIF kind = 'number' THEN
    n := (value #>> '{}')::numeric;
    IF n < (schema->>'minimum')::numeric THEN errors := errors || format('%s must be >= %s', path, schema->>'minimum'); END IF;
    IF n > (schema->>'maximum')::numeric THEN errors := errors || format('%s must be <= %s', path, schema->>'maximum'); END IF;
    IF n <= (schema->>'exclusiveMinimum')::numeric THEN errors := errors || format('%s must be > %s', path, schema->>'exclusiveMinimum'); END IF;
    IF n >= (schema->>'exclusiveMaximum')::numeric THEN errors := errors || format('%s must be < %s', path, schema->>'exclusiveMaximum'); END IF;
  ELSIF kind = 'array' THEN
    IF jsonb_array_length(value) < (schema->>'minItems')::int THEN
      errors := errors || format('%s must NOT have fewer than %s items', path, schema->>'minItems');
    END IF;
    IF jsonb_array_length(value) > (schema->>'maxItems')::int THEN
      errors := errors || format('%s must NOT have more than %s items', path, schema->>'maxItems');
    END IF;
    IF (schema->>'uniqueItems')::boolean AND (SELECT count(DISTINCT e) FROM jsonb_array_elements(value) e) < jsonb_array_length(value) THEN
      errors := errors || format('%s must NOT have duplicate items', path);
    END IF;
    IF schema ? 'items' THEN
      FOR item IN SELECT e FROM jsonb_array_elements(value) e LOOP
        errors := errors || queue.schema_errors(schema->'items', item, path || '/' || i);
        i := i + 1;
      END LOOP;
    END IF;
  ELSIF kind = 'object' THEN
    FOR k IN SELECT r FROM jsonb_array_elements_text(COALESCE(schema->'required', '[]')) r WHERE NOT value ? r LOOP
      errors := errors || format('%s must have property "%s"', path, k);
    END LOOP;
    IF (SELECT count(*) FROM jsonb_object_keys(value)) < (schema->>'minProperties')::int THEN
      errors := errors || format('%s must NOT have fewer than %s properties', path, schema->>'minProperties');
    END IF;
    IF (SELECT count(*) FROM jsonb_object_keys(value)) > (schema->>'maxProperties')::int THEN
      errors := errors || format('%s must NOT have more than %s properties', path, schema->>'maxProperties');
    END IF;
    FOR k, item IN SELECT e.key, e.value FROM jsonb_each(value) e ORDER BY e.key LOOP
      IF schema->'properties' ? k THEN
        errors := errors || queue.schema_errors(schema->'properties'->k, item, path || '/' || k);
      ELSIF schema->'additionalProperties' = 'false' THEN
        errors := errors || format('%s has unknown property "%s"', path, k);
      ELSIF schema ? 'additionalProperties' THEN
        errors := errors || queue.schema_errors(schema->'additionalProperties', item, path || '/' || k);
      END IF;
    END LOOP;
  END IF;
  RETURN errors;
END
$$;

-- queue.send (006) stays what it was, under another name, and the new queue.send checks a task
-- queue's payload against its registered schema first: a bad payload is refused at enqueue,
-- from supabase-js and psql as from the API, with the same messages.
ALTER FUNCTION queue.send(text, jsonb, jsonb) RENAME TO send_unchecked;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    REVOKE ALL ON FUNCTION queue.send_unchecked(text, jsonb, jsonb) FROM service_role;
  END IF;
END
$$;

CREATE FUNCTION queue.send(queue_name text, data jsonb DEFAULT '{}', options jsonb DEFAULT '{}', OUT id uuid, OUT created boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
  payload_schema jsonb;
  problems text[];
BEGIN
  SELECT t.data_schema INTO payload_schema FROM queue.task_queues t WHERE t.name = queue_name;
  IF FOUND THEN
    problems := queue.schema_errors(payload_schema, COALESCE(data, 'null'::jsonb), 'data');
    IF cardinality(problems) > 0 THEN
      RAISE EXCEPTION 'queue-service: % refuses this payload: %', queue_name, array_to_string(problems, '; ')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'the payload schema of every task queue is in queue.task_queues.data_schema';
    END IF;
  END IF;
  SELECT s.id, s.created INTO id, created FROM queue.send_unchecked(queue_name, data, options) s;
END
$$;

-- A shared rate limit: every grant of permits is a row, and a queue's grants within its period
-- never add up to more than its limit. Taken before a worker fetches, so it claims only jobs it
-- may start now, and counted on Postgres's clock, so processes on several machines agree. The
-- queue's registry row is locked while permits are counted, which puts concurrent takers in line.
CREATE TABLE queue.rate_limit_grants (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue_name text NOT NULL REFERENCES queue.task_queues (name) ON DELETE CASCADE,
  granted_at timestamptz NOT NULL,
  permits integer NOT NULL CHECK (permits >= 0)
);
CREATE INDEX rate_limit_grants_queue ON queue.rate_limit_grants (queue_name, granted_at);
REVOKE ALL ON queue.rate_limit_grants FROM PUBLIC;

-- Up to `wanted` permits for jobs of the queue to start now. `retry_after_ms` is how long until
-- another permit frees up, when fewer than wanted were granted. A queue with no rate limit grants
-- everything. Give back what a fetch did not use with queue.return_permits.
CREATE FUNCTION queue.take_permits(queue_name text, wanted integer, OUT granted integer, OUT grant_id bigint, OUT retry_after_ms integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
  q queue.task_queues%ROWTYPE;
  now_at timestamptz;
  period interval;
  used integer;
  frees_at timestamptz;
BEGIN
  SELECT * INTO q FROM queue.task_queues t WHERE t.name = queue_name FOR UPDATE;
  IF NOT FOUND OR q.rate_limit IS NULL THEN
    granted := wanted;
    retry_after_ms := 0;
    RETURN;
  END IF;
  -- After the lock: a taker that waited for it counts from when it got it.
  now_at := clock_timestamp();
  period := q.rate_period_seconds * interval '1s';
  DELETE FROM queue.rate_limit_grants g WHERE g.queue_name = queue_name AND g.granted_at <= now_at - period;
  SELECT COALESCE(sum(g.permits), 0) INTO used FROM queue.rate_limit_grants g WHERE g.queue_name = queue_name;
  granted := GREATEST(0, LEAST(wanted, q.rate_limit - used));
  IF granted > 0 THEN
    INSERT INTO queue.rate_limit_grants (queue_name, granted_at, permits) VALUES (queue_name, now_at, granted) RETURNING id INTO grant_id;
  END IF;
  retry_after_ms := 0;
  IF granted < wanted THEN
    -- The earliest moment the window holds fewer than `limit`: when its oldest permits leave it.
    SELECT min(g.granted_at) + period INTO frees_at FROM queue.rate_limit_grants g WHERE g.queue_name = queue_name AND g.permits > 0;
    retry_after_ms := GREATEST(1, ceil(extract(epoch FROM COALESCE(frees_at, now_at) - now_at) * 1000))::int;
  END IF;
END
$$;

CREATE FUNCTION queue.return_permits(grant_id bigint, unused integer) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  UPDATE queue.rate_limit_grants g SET permits = GREATEST(0, g.permits - unused) WHERE g.id = grant_id
$$;

-- Jobs that arrived while the pgboss schema was not the version this file writes (as
-- queue.held_changes holds sync changes); the next `migrate` enqueues them.
CREATE TABLE queue.held_jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue_name text NOT NULL,
  data jsonb NOT NULL,
  held_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON queue.held_jobs FROM PUBLIC;

-- Many jobs of one task queue in one statement, with the queue's settings, as boss.insert() would
-- write them; wakes the queue's workers. Returns the number of jobs created. For triggers and
-- other SQL; it does not check payloads (the workers do, and dead-letter what fails).
CREATE FUNCTION queue.enqueue_jobs(queue_name text, payloads jsonb[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
  target pgboss.queue%ROWTYPE;
  created integer;
BEGIN
  IF payloads IS NULL OR cardinality(payloads) = 0 THEN
    RETURN 0;
  END IF;
  IF (SELECT v.version FROM pgboss.version v) IS DISTINCT FROM queue.pgboss_schema_version() THEN
    INSERT INTO queue.held_jobs (queue_name, data) SELECT queue_name, p FROM unnest(payloads) AS p;
    RAISE WARNING 'queue-service: the pgboss schema is not version %; holding % job(s) of % in queue.held_jobs until the next migrate',
      queue.pgboss_schema_version(), cardinality(payloads), queue_name;
    RETURN 0;
  END IF;
  SELECT * INTO target FROM pgboss.queue q WHERE q.name = queue_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'queue-service: queue "%" does not exist; run migrate, which creates it', queue_name USING ERRCODE = 'undefined_object';
  END IF;
  EXECUTE format($insert$
    INSERT INTO pgboss.%I (
      id, name, data, priority, start_after, created_on, expire_seconds, deletion_seconds, keep_until,
      retry_limit, retry_delay, retry_backoff, retry_delay_max, policy, dead_letter, heartbeat_seconds,
      blocked, blocking, pending_dependencies
    )
    SELECT gen_random_uuid(), q.name, p, 0, pgboss.job_now(), pgboss.job_now(), q.expire_seconds, q.deletion_seconds,
           pgboss.job_now() + q.retention_seconds * interval '1s', q.retry_limit, q.retry_delay, q.retry_backoff,
           q.retry_delay_max, q.policy, q.dead_letter, q.heartbeat_seconds, false, false, 0
    FROM pgboss.queue q, unnest($2::jsonb[]) AS p
    WHERE q.name = $1
  $insert$, target.table_name) USING queue_name, payloads;
  GET DIAGNOSTICS created = ROW_COUNT;
  IF target.notify THEN
    PERFORM queue.wake(queue_name);
  END IF;
  RETURN created;
END
$$;

-- Run by `migrate` once the pgboss version is right again.
CREATE FUNCTION queue.release_held_jobs() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  released integer := 0;
  held record;
BEGIN
  FOR held IN
    WITH taken AS (DELETE FROM queue.held_jobs RETURNING queue_name, data, id)
    SELECT queue_name, array_agg(data ORDER BY id) AS payloads FROM taken GROUP BY queue_name
  LOOP
    released := released + queue.enqueue_jobs(held.queue_name, held.payloads);
  END LOOP;
  RETURN released;
END
$$;

-- Deleting inventory items enqueues one image-cleanup job per deleted item that had images, in
-- the deleting transaction: a delete that rolls back deletes no image, and one that commits
-- cannot lose its cleanup. Statement-level, so a bulk delete costs one insert.
CREATE FUNCTION queue.inventory_items_image_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM queue.enqueue_jobs('image-cleanup', ARRAY(
    SELECT jsonb_build_object('itemId', o.id::text, 'sku', o.sku, 'imageUrls', to_jsonb(urls.list))
    FROM old_rows o
    CROSS JOIN LATERAL (SELECT array_agg(u ORDER BY n) AS list FROM unnest(o.image_urls) WITH ORDINALITY AS x(u, n) WHERE u <> '') urls
    WHERE urls.list IS NOT NULL
  ));
  RETURN NULL;
END
$$;

CREATE TRIGGER queue_image_cleanup AFTER DELETE ON public.inventory_items
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION queue.inventory_items_image_cleanup();

-- Functions are executable by PUBLIC unless revoked one by one (see 006).
REVOKE ALL ON FUNCTION
  queue.register_task_queue(text, text, jsonb, integer, integer),
  queue.schema_errors(jsonb, jsonb, text),
  queue.send(text, jsonb, jsonb),
  queue.take_permits(text, integer),
  queue.return_permits(bigint, integer),
  queue.enqueue_jobs(text, jsonb[]),
  queue.release_held_jobs(),
  queue.inventory_items_image_cleanup()
FROM PUBLIC;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    GRANT EXECUTE ON FUNCTION queue.send(text, jsonb, jsonb) TO service_role;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    REVOKE ALL ON FUNCTION queue.send(text, jsonb, jsonb) FROM anon;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    REVOKE ALL ON FUNCTION queue.send(text, jsonb, jsonb) FROM authenticated;
  END IF;
END
$$;
