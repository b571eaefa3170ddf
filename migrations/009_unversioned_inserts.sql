-- Inserts stop writing document versions; queue.attach_sync is otherwise as in 001, and
-- `migrate` runs it again for every synced table, which regenerates the trigger functions.
--
-- A row's version orders its writes in Elasticsearch (external versioning). A row with no
-- version row is read at version 0, as rows that predate the triggers always were, and a first
-- insert needs nothing more: nothing older can be in the index under a new key, and the row's
-- first update or delete takes a version from the sequence, above 0. Only a key inserted again
-- after a delete has a version row, its tombstone, and needs a version above it, or the index
-- would refuse the new document as no newer than the delete. That lookup is `= ANY` on the
-- version table's primary key, which the trigger function keeps to index probes whatever the
-- statement's size (enable_seqscan = off, set on the function alone).
--
-- It saves every insert a row and an index entry in queue.<table>_version: BENCHMARKS.md,
-- trigger cost, has the figures.
CREATE OR REPLACE FUNCTION queue.attach_sync(target regclass) RETURNS void
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

  -- Rows written before sync was attached, and rows inserted since and never changed, have no
  -- entry: version 0. Fill factor 70 leaves room for the updates to stay HOT.
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
        SELECT array_agg(n.%4$I::text) INTO pending FROM new_rows n;
        -- Only an id inserted again after a delete has a version row (its tombstone) to move
        -- past; every other inserted row has none, and is read at version 0. A sequential scan
        -- would test every version row against the whole array (a 100,000-row insert took 43 s),
        -- and one plan serves every size here, so the function turns sequential scans off: this
        -- is an index probe per key. Its other statements read transition tables, arrays and
        -- pg-boss's queue row by its primary key, where that changes nothing.
        UPDATE %3$s AS v SET version = nextval('queue.document_version')
        WHERE v.%4$I = ANY (pending::%8$s[]);
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
  $fn$, changed_fn, settings || ' SET enable_seqscan = off', version_table, key_column, enqueue_block, clock, queue_name, key_type);

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
