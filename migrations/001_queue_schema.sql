-- The queue schema: how a committed row change becomes a pg-boss job in the same transaction.
--
-- Written against pg-boss schema version 46 (pg-boss 12.38.0). `migrate` refuses any other
-- version, and queue.enqueue_sync() checks it again on every call so that a later, unplanned
-- upgrade of pgboss can never make a trigger write the wrong columns: the change is held in
-- queue.held_changes instead, and the next `migrate` enqueues it.

CREATE SCHEMA IF NOT EXISTS queue;

-- Nothing here is for app roles (anon, authenticated): functions default to EXECUTE for PUBLIC,
-- so take that away for everything created in this schema, now and later.
REVOKE ALL ON SCHEMA queue FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA queue REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
REVOKE ALL ON SCHEMA pgboss FROM PUBLIC;

CREATE FUNCTION queue.pgboss_schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 46 $$;

-- The channel pg-boss's LISTEN uses (plans.notifyChannelSql('pgboss')); a NOTIFY on it with a
-- queue name as payload wakes that queue's workers like boss.send() does.
CREATE FUNCTION queue.notify_channel() RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT 'pgboss_' || left(encode(sha224('pgboss'::bytea), 'hex'), 24)
$$;

-- Every document version comes from this one sequence. A trigger takes the value while its
-- statement holds the row lock, so for any one row the versions grow in commit order, which is
-- what Elasticsearch's external versioning needs to refuse a stale write.
CREATE SEQUENCE queue.document_version AS bigint;

-- Changes that arrived while the pgboss schema was not the version the triggers were written for.
CREATE TABLE queue.held_changes (
  table_name text NOT NULL,
  key text NOT NULL,
  held_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, key)
);

-- Wakes a queue's idle workers at once, as boss.send() does on a notify-enabled queue.
CREATE FUNCTION queue.wake(queue_name text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT pg_notify(queue.notify_channel(), queue_name)
$$;

-- Enqueues one search-sync job per key, exactly as boss.send('search-sync.<table>', {table, id},
-- {singletonKey: id}) would (same columns, the queue's own retry, expiry, retention and dead
-- letter settings), with one difference that keeps updates from being lost: a key that already
-- has a job waiting (created or retry) gets no second job, and that waiting job is locked until
-- this transaction ends. pg-boss claims jobs with FOR UPDATE SKIP LOCKED, so it passes the
-- locked job by and claims it only after this write is committed, and the worker that runs it
-- reads the row as this write left it. Returns the number of jobs created; waking a worker for
-- them is the caller's choice (the triggers debounce it, see attach_sync).
CREATE FUNCTION queue.enqueue_sync(table_name text, keys text[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  queue_name text := 'search-sync.' || table_name;
  pending text[] := keys;
  inserted text[];
  created integer := 0;
BEGIN
  IF pending IS NULL OR cardinality(pending) = 0 THEN
    RETURN 0;
  END IF;

  IF (SELECT v.version FROM pgboss.version v) IS DISTINCT FROM queue.pgboss_schema_version() THEN
    INSERT INTO queue.held_changes (table_name, key)
    SELECT enqueue_sync.table_name, k FROM unnest(pending) AS k
    ON CONFLICT DO NOTHING;
    RAISE WARNING 'queue-service: pgboss schema is not version %, holding % change(s) of % in queue.held_changes until the next migrate',
      queue.pgboss_schema_version(), cardinality(pending), table_name;
    RETURN 0;
  END IF;

  -- A concurrent enqueue of the same key (reindex, repair, the API) can make the insert below
  -- skip a key whose conflicting job was not yet visible to the lock step; go round again so
  -- that job is locked too, or a new one inserted if it was claimed in the meantime.
  FOR round IN 1..5 LOOP
    WITH waiting AS (
      SELECT j.singleton_key
      FROM pgboss.job j
      WHERE j.name = queue_name
        AND j.singleton_key = ANY (pending)
        AND j.state < 'active'
      FOR KEY SHARE OF j
    )
    SELECT array_agg(k) INTO pending
    FROM unnest(pending) AS k
    WHERE k NOT IN (SELECT w.singleton_key FROM waiting w);

    EXIT WHEN pending IS NULL;

    WITH ins AS (
      INSERT INTO pgboss.job (
        id, name, data, priority, start_after, created_on, singleton_key,
        expire_seconds, deletion_seconds, keep_until,
        retry_limit, retry_delay, retry_backoff, retry_delay_max,
        policy, dead_letter, heartbeat_seconds, blocked, blocking, pending_dependencies
      )
      SELECT
        gen_random_uuid(), queue_name, jsonb_build_object('table', enqueue_sync.table_name, 'id', k), 0,
        pgboss.job_now(), pgboss.job_now(), k,
        COALESCE(q.expire_seconds, 900), COALESCE(q.deletion_seconds, 604800),
        pgboss.job_now() + COALESCE(q.retention_seconds, 1209600) * interval '1s',
        COALESCE(q.retry_limit, 2), COALESCE(q.retry_delay, 0), COALESCE(q.retry_backoff, false), q.retry_delay_max,
        q.policy, q.dead_letter, q.heartbeat_seconds, false, false, 0
      FROM unnest(pending) AS k
      LEFT JOIN pgboss.queue q ON q.name = queue_name
      ON CONFLICT DO NOTHING
      RETURNING singleton_key
    )
    SELECT array_agg(ins.singleton_key) INTO inserted FROM ins;

    created := created + COALESCE(cardinality(inserted), 0);
    SELECT array_agg(k) INTO pending
    FROM unnest(pending) AS k
    WHERE inserted IS NULL OR k <> ALL (inserted);

    EXIT WHEN pending IS NULL;
  END LOOP;

  RETURN created;
END
$$;

-- Attaches search sync to an app table: a version table, a trigger function and three
-- statement-level triggers. Statement-level with transition tables, so a 100,000-row statement
-- enqueues its jobs in one INSERT ... SELECT instead of 100,000 trigger calls. Idempotent; run by
-- `migrate` for every table in the service's config.
CREATE FUNCTION queue.attach_sync(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $attach$
DECLARE
  table_name text;
  key_column text;
  key_type text;
  version_table text;
  clock text;
  fn text;
BEGIN
  SELECT c.relname INTO table_name FROM pg_class c WHERE c.oid = target;

  SELECT a.attname, format_type(a.atttypid, a.atttypmod) INTO key_column, key_type
  FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = target AND i.indisprimary AND i.indnatts = 1;
  IF key_column IS NULL THEN
    RAISE EXCEPTION 'queue-service: table % needs a single-column primary key to be synced', target
      USING ERRCODE = 'invalid_table_definition';
  END IF;

  version_table := format('queue.%I', table_name || '_version');
  clock := format('queue.%I', table_name || '_wake_clock');
  fn := format('queue.%I', table_name || '_changed');

  -- The document version of every row written since sync was attached. A row with no entry has
  -- version 0, so plain inserts of new ids need no write here at all.
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS %s (%I %s PRIMARY KEY, version bigint NOT NULL) WITH (fillfactor = 70)',
    version_table, key_column, key_type);
  EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %s AS bigint', clock);

  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION %1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
    DECLARE
      keys text[];
      now_ms bigint;
    BEGIN
      IF TG_OP = 'INSERT' THEN
        -- Only an id deleted before has a version row (its tombstone); it must move past it.
        WITH revived AS (
          UPDATE %2$s v SET version = nextval('queue.document_version')
          FROM new_rows n WHERE v.%3$I = n.%3$I
        )
        SELECT array_agg(n.%3$I::text) INTO keys FROM new_rows n;
      ELSIF TG_OP = 'UPDATE' THEN
        -- An update that changes no column enqueues nothing; one that changes the key deletes
        -- the old document and indexes the new one.
        WITH changed AS MATERIALIZED (
          SELECT COALESCE(n.%3$I, o.%3$I) AS key
          FROM new_rows n FULL JOIN old_rows o ON o.%3$I = n.%3$I
          WHERE n.%3$I IS NULL OR o.%3$I IS NULL OR NOT (n OPERATOR(pg_catalog.*=) o)
        ), bumped AS (
          INSERT INTO %2$s AS v (%3$I, version)
          SELECT c.key, nextval('queue.document_version') FROM changed c
          ON CONFLICT (%3$I) DO UPDATE SET version = EXCLUDED.version
        )
        SELECT array_agg(c.key::text) INTO keys FROM changed c;
      ELSE
        WITH tombstones AS (
          INSERT INTO %2$s AS v (%3$I, version)
          SELECT o.%3$I, nextval('queue.document_version') FROM old_rows o
          ON CONFLICT (%3$I) DO UPDATE SET version = EXCLUDED.version
        )
        SELECT array_agg(o.%3$I::text) INTO keys FROM old_rows o;
      END IF;

      IF queue.enqueue_sync(%4$L, keys) = 0 THEN
        RETURN NULL;
      END IF;
      -- NOTIFY serialises the commits of notifying transactions (it holds a global lock across
      -- the flush of the commit record), so notifying on every write would tax every app write.
      -- A write notifies only when its queue had no notify in the last 20 ms. The clock is a
      -- sequence because reading and setting one never waits on another transaction. A write
      -- whose notify was skipped commits shortly after the one that was sent; the service follows
      -- every notification with a second wake-up to catch it (src/sync/wakeup.ts), and pg-boss's
      -- polling is the backstop.
      now_ms := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
      IF now_ms - (SELECT c.last_value FROM %5$s c) >= 20 THEN
        PERFORM setval(%6$L, now_ms);
        PERFORM pg_notify(queue.notify_channel(), %7$L);
      END IF;
      RETURN NULL;
    END
    $body$
  $fn$, fn, version_table, key_column, table_name, clock, clock, 'search-sync.' || table_name);

  EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);

  EXECUTE format('DROP TRIGGER IF EXISTS queue_sync_insert ON %s', target);
  EXECUTE format('DROP TRIGGER IF EXISTS queue_sync_update ON %s', target);
  EXECUTE format('DROP TRIGGER IF EXISTS queue_sync_delete ON %s', target);
  EXECUTE format('CREATE TRIGGER queue_sync_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, fn);
  EXECUTE format('CREATE TRIGGER queue_sync_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, fn);
  EXECUTE format('CREATE TRIGGER queue_sync_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, fn);

END
$attach$;

-- Bumps the version of rows without changing them, under the same per-row lock order as a write,
-- so a repair or reindex job writes a version newer than anything Elasticsearch holds for them.
CREATE FUNCTION queue.bump_versions(target regclass, keys text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  table_name text;
  key_column text;
  key_type text;
BEGIN
  SELECT c.relname INTO table_name FROM pg_class c WHERE c.oid = target;
  SELECT a.attname, format_type(a.atttypid, a.atttypmod) INTO key_column, key_type
  FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = target AND i.indisprimary AND i.indnatts = 1;
  EXECUTE format(
    'INSERT INTO queue.%1$I AS v (%2$I, version)
     SELECT k::%3$s, nextval(''queue.document_version'') FROM unnest($1) AS k
     ON CONFLICT (%2$I) DO UPDATE SET version = EXCLUDED.version',
    table_name || '_version', key_column, key_type) USING keys;
END
$$;

-- Moves changes held during a pgboss version mismatch into the queues; run by `migrate`.
CREATE FUNCTION queue.release_held_changes() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  released integer := 0;
  held record;
BEGIN
  FOR held IN
    WITH taken AS (DELETE FROM queue.held_changes RETURNING table_name, key)
    SELECT table_name, array_agg(key) AS keys FROM taken GROUP BY table_name
  LOOP
    PERFORM queue.enqueue_sync(held.table_name, held.keys);
    released := released + cardinality(held.keys);
  END LOOP;
  RETURN released;
END
$$;
