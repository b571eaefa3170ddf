-- State and functions of the operator tools: `reindex` (and its zero-downtime `--rebuild`),
-- `reconcile --repair` and `migrate-legacy`.

-- A rebuild in progress, one row per alias. While a row is here every sync batch of that table
-- writes to the alias and to new_index (the sync worker reads this table for every batch, so a
-- row committed here reaches every worker of every container before its next batch).
CREATE TABLE queue.index_rebuilds (
  alias text PRIMARY KEY,
  table_name text NOT NULL,
  new_index text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now()
);

-- The legacy triggers `migrate-legacy` dropped, with their definitions, so that
-- `migrate-legacy --rollback` can create them again exactly as they were.
CREATE TABLE queue.legacy_triggers (
  table_name text NOT NULL,
  trigger_name text NOT NULL,
  definition text NOT NULL,
  dropped_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, trigger_name)
);

REVOKE ALL ON queue.index_rebuilds, queue.legacy_triggers FROM PUBLIC;

-- Syncs rows again through the same jobs as the triggers. With `bump`, each row first gets a new
-- version (queue.bump_versions), so its job writes a version newer than any the index holds for
-- it: a document rewritten with its old version would be refused as a conflict and left as it is.
-- An id with no row gets a tombstone version, and its job deletes the document.
CREATE FUNCTION queue.resync(target regclass, keys text[], bump boolean) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  table_name text;
  created integer;
BEGIN
  SELECT c.relname INTO table_name FROM pg_class c WHERE c.oid = target;
  IF bump THEN
    PERFORM queue.bump_versions(target, keys);
  END IF;
  created := queue.enqueue_sync(table_name, keys);
  PERFORM queue.wake('search-sync.' || table_name);
  RETURN created;
END
$$;

-- Moves the document version clock past `past` when the index holds versions the database never
-- issued (a database restored from a backup older than the index). Until then every write to such
-- a row would be refused by Elasticsearch as older than what it holds.
--
-- The clock only ever moves forward: versions must grow per row, and setval() could move it back
-- past values other sessions took since it was read. So the jump is one nextval() with a larger
-- increment; a session that takes a value meanwhile jumps forward too, which is harmless. ALTER
-- SEQUENCE holds off other nextval() calls until commit: run this in a transaction of its own.
CREATE FUNCTION queue.advance_document_version(past bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  reached bigint := nextval('queue.document_version');
BEGIN
  IF reached > past THEN
    RETURN reached;
  END IF;
  EXECUTE format('ALTER SEQUENCE queue.document_version INCREMENT BY %s', past - reached + 1);
  reached := nextval('queue.document_version');
  ALTER SEQUENCE queue.document_version INCREMENT BY 1;
  RETURN reached;
END
$$;

REVOKE ALL ON FUNCTION queue.resync(regclass, text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION queue.advance_document_version(bigint) FROM PUBLIC;
