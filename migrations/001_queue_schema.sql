-- The queue schema: how a committed row change becomes a pg-boss job in the same transaction.
--
-- Written against pg-boss schema version 46 (pg-boss 12.38.0). `migrate` refuses any other
-- version, and every enqueue checks it again so that a later, unplanned upgrade of pgboss can
-- never make a trigger write the wrong columns: the change is held in queue.held_changes instead,
-- and the next `migrate` enqueues it.

CREATE SCHEMA IF NOT EXISTS queue;

-- Nothing here is for app roles (anon, authenticated). Functions are executable by PUBLIC when
-- created, and a per-schema default privilege cannot take that away, so every migration revokes
-- its own functions (this one at its end).
REVOKE ALL ON SCHEMA queue FROM PUBLIC;
REVOKE ALL ON SCHEMA pgboss FROM PUBLIC;

CREATE FUNCTION queue.pgboss_schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 46 $$;

-- The channel pg-boss's LISTEN uses (plans.notifyChannelSql('pgboss')); a NOTIFY on it with a
-- queue name as payload wakes that queue's workers like boss.send() does.
CREATE FUNCTION queue.notify_channel() RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT 'pgboss_' || left(encode(sha224('pgboss'::bytea), 'hex'), 24)
$$;

-- Wakes a queue's idle workers at once, as boss.send() does on a notify-enabled queue.
CREATE FUNCTION queue.wake(queue_name text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT pg_notify(queue.notify_channel(), queue_name)
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

CREATE FUNCTION queue.hold_changes(table_name text, keys text[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO queue.held_changes (table_name, key)
  SELECT hold_changes.table_name, k FROM unnest(keys) AS k
  ON CONFLICT DO NOTHING;
  RAISE WARNING 'queue-service: the pgboss schema is not version %; holding % change(s) of % in queue.held_changes until the next migrate',
    queue.pgboss_schema_version(), cardinality(keys), table_name;
  RETURN 0;
END
$$;

-- Attaches search sync to an app table. Generates, for table T with queue search-sync.T:
--   queue.T_version     the document version of every row written since sync was attached
--   queue.T_enqueue()   one job per key, coalesced (see below), for callers other than triggers
--   queue.T_changed()   the trigger function, behind three statement-level triggers
-- Statement-level with transition tables, so a 100,000-row statement enqueues its jobs in one
-- INSERT ... SELECT instead of 100,000 trigger calls. The queue and its pg-boss table are written
-- into the generated functions as literals: a plan on pg-boss's partitioned job table whose
-- queue name is a parameter locks every partition and every index on each execution.
--
-- Every statement in these functions has one plan whatever the sizes: plpgsql caches a plan for
-- the size of the first statement it ran for, so a plan that chose a join or an index scan for
-- one row would run a 100,000-row statement in quadratic time. Upserts, a FULL JOIN (always hash
-- or merge) and INSERT ... SELECT from arrays have no such choice to get wrong.
--
-- Idempotent; `migrate` runs it for every table in the service's config, after the queues exist.
CREATE FUNCTION queue.attach_sync(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $attach$
DECLARE
  table_name text;
  key_column text;
  key_type text;
  queue_name text;
  job_table text;
  version_table text;
  clock text;
  enqueue_fn text;
  changed_fn text;
  enqueue_block text;
  settings text := 'SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET jit = off';
BEGIN
  SELECT c.relname INTO table_name FROM pg_class c WHERE c.oid = target;
  queue_name := 'search-sync.' || table_name;

  SELECT a.attname, format_type(a.atttypid, a.atttypmod) INTO key_column, key_type
  FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = target AND i.indisprimary AND i.indnatts = 1;
  IF key_column IS NULL THEN
    RAISE EXCEPTION 'queue-service: table % needs a single-column primary key to be synced', target
      USING ERRCODE = 'invalid_table_definition';
  END IF;

  SELECT format('pgboss.%I', q.table_name) INTO job_table FROM pgboss.queue q WHERE q.name = queue_name;
  IF job_table IS NULL THEN
    RAISE EXCEPTION 'queue-service: queue % does not exist; run migrate, which creates it', queue_name
      USING ERRCODE = 'undefined_object';
  END IF;

  version_table := format('queue.%I', table_name || '_version');
  clock := format('queue.%I', table_name || '_wake_clock');
  enqueue_fn := format('queue.%I', table_name || '_enqueue');
  changed_fn := format('queue.%I', table_name || '_changed');

  -- Rows written before sync was attached have no entry: version 0. Fill factor 70 leaves room
  -- for the updates to stay HOT.
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS %s (%I %s PRIMARY KEY, version bigint NOT NULL) WITH (fillfactor = 70)',
    version_table, key_column, key_type);
  EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %s AS bigint', clock);

  -- One search-sync job per key, exactly as boss.send('search-sync.T', {table, id},
  -- {singletonKey: id}) makes it (same columns, the queue's own retry, expiry, retention and
  -- dead letter settings), with one addition that keeps updates from being lost. A key whose
  -- job is waiting in `created` gets no second one (the stately policy's unique index is the
  -- arbiter), and ON CONFLICT ... DO UPDATE ... WHERE false locks that waiting job, without
  -- changing it, until this transaction ends. pg-boss claims jobs with FOR UPDATE SKIP LOCKED,
  -- so it passes the locked job by and claims it only after this write commits, and the worker
  -- that runs it reads the row as this write left it. If a worker claims the job first, the job
  -- leaves the arbiter index and Postgres inserts a new one instead: one statement, no window
  -- between the check and the lock.
  --
  -- The block runs inside the trigger function itself (one function call and one switch of
  -- settings per statement, not two) and inside queue.T_enqueue() for every other caller.
  enqueue_block := format($block$
      <<enqueue>>
      BEGIN
        EXIT enqueue WHEN pending IS NULL OR cardinality(pending) = 0;
        IF (SELECT v.version FROM pgboss.version v) IS DISTINCT FROM queue.pgboss_schema_version() THEN
          PERFORM queue.hold_changes(%1$L, pending);
          EXIT enqueue;
        END IF;
        WITH created_jobs AS (
          INSERT INTO %2$s AS j (
            id, name, data, priority, start_after, created_on, singleton_key,
            expire_seconds, deletion_seconds, keep_until,
            retry_limit, retry_delay, retry_backoff, retry_delay_max,
            policy, dead_letter, heartbeat_seconds, blocked, blocking, pending_dependencies
          )
          SELECT
            gen_random_uuid(), q.name, jsonb_build_object('table', %1$L, 'id', k), 0,
            pgboss.job_now(), pgboss.job_now(), k,
            q.expire_seconds, q.deletion_seconds, pgboss.job_now() + q.retention_seconds * interval '1s',
            q.retry_limit, q.retry_delay, q.retry_backoff, q.retry_delay_max,
            q.policy, q.dead_letter, q.heartbeat_seconds, false, false, 0
          FROM pgboss.queue q, unnest(pending) AS k
          WHERE q.name = %3$L
          ON CONFLICT (name, state, COALESCE(singleton_key, '')) WHERE state <= 'active' AND policy = 'stately'
          DO UPDATE SET name = EXCLUDED.name WHERE false
          RETURNING 1
        )
        SELECT count(*)::int INTO created FROM created_jobs;
      END enqueue;
  $block$, table_name, job_table, queue_name);

  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION %1$s(keys text[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER %2$s
    AS $body$
    DECLARE
      pending text[] := keys;
      created integer := 0;
    BEGIN
      %3$s
      RETURN created;
    END
    $body$
  $fn$, enqueue_fn, settings, enqueue_block);

  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION %1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER %2$s
    AS $body$
    DECLARE
      pending text[];
      created integer := 0;
      now_ms bigint;
    BEGIN
      IF TG_OP = 'INSERT' THEN
        -- An id deleted before still has a version row (its tombstone) to move past.
        WITH versioned AS (
          INSERT INTO %3$s AS v (%4$I, version)
          SELECT n.%4$I, nextval('queue.document_version') FROM new_rows n
          ON CONFLICT (%4$I) DO UPDATE SET version = EXCLUDED.version
        )
        SELECT array_agg(n.%4$I::text) INTO pending FROM new_rows n;
      ELSIF TG_OP = 'UPDATE' THEN
        -- An update that changes no column enqueues nothing; one that changes the key deletes
        -- the old document and indexes the new one.
        WITH changed AS MATERIALIZED (
          SELECT COALESCE(n.%4$I, o.%4$I) AS key
          FROM new_rows n FULL JOIN old_rows o ON o.%4$I = n.%4$I
          WHERE n.%4$I IS NULL OR o.%4$I IS NULL OR NOT (n OPERATOR(pg_catalog.*=) o)
        ), versioned AS (
          INSERT INTO %3$s AS v (%4$I, version)
          SELECT c.key, nextval('queue.document_version') FROM changed c
          ON CONFLICT (%4$I) DO UPDATE SET version = EXCLUDED.version
        )
        SELECT array_agg(c.key::text) INTO pending FROM changed c;
      ELSE
        WITH tombstones AS (
          INSERT INTO %3$s AS v (%4$I, version)
          SELECT o.%4$I, nextval('queue.document_version') FROM old_rows o
          ON CONFLICT (%4$I) DO UPDATE SET version = EXCLUDED.version
        )
        SELECT array_agg(o.%4$I::text) INTO pending FROM old_rows o;
      END IF;

      %5$s

      IF created = 0 THEN
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
      IF now_ms - (SELECT c.last_value FROM %6$s c) >= 20 THEN
        PERFORM setval(%6$L, now_ms);
        PERFORM pg_notify(queue.notify_channel(), %7$L);
      END IF;
      RETURN NULL;
    END
    $body$
  $fn$, changed_fn, settings, version_table, key_column, enqueue_block, clock, queue_name);

  EXECUTE format('REVOKE ALL ON FUNCTION %s(text[]) FROM PUBLIC', enqueue_fn);
  EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', changed_fn);

  EXECUTE format('DROP TRIGGER IF EXISTS queue_sync_insert ON %s', target);
  EXECUTE format('DROP TRIGGER IF EXISTS queue_sync_update ON %s', target);
  EXECUTE format('DROP TRIGGER IF EXISTS queue_sync_delete ON %s', target);
  EXECUTE format('CREATE TRIGGER queue_sync_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, changed_fn);
  EXECUTE format('CREATE TRIGGER queue_sync_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, changed_fn);
  EXECUTE format('CREATE TRIGGER queue_sync_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, changed_fn);
END
$attach$;

-- Enqueues search-sync jobs for rows of a synced table from anywhere (reindex, repair, the
-- legacy migration, psql): the same jobs, coalescing and locking as the triggers. Returns the
-- number of jobs created; it does not wake workers (call queue.wake).
CREATE FUNCTION queue.enqueue_sync(table_name text, keys text[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  created integer;
BEGIN
  IF to_regprocedure(format('queue.%I(text[])', table_name || '_enqueue')) IS NULL THEN
    RAISE EXCEPTION 'queue-service: % is not a synced table', table_name USING ERRCODE = 'undefined_table';
  END IF;
  EXECUTE format('SELECT queue.%I($1)', table_name || '_enqueue') INTO created USING keys;
  RETURN created;
END
$$;

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

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA queue FROM PUBLIC;
