-- queue.bump_versions skips one version before it hands out the rows' new ones.
--
-- A write made by hand without a version (a delete in Kibana, `DELETE /listings/_doc/<id>`)
-- moves the document to one above its external version: a tombstone at V + 1. When V was the
-- last version the clock issued, the bump's first value was V + 1 too, and Elasticsearch refused
-- the reindex's rewrite as no newer than the tombstone (a conflict, counted as superseded), so the
-- document stayed deleted. With one value skipped, every bumped version is at least two above
-- any version issued before the call, so it outranks one unversioned write to any document.
-- More than one such write to one document is drift that `reconcile --repair` finds: it reads
-- the document's version and moves the clock past it.
--
-- queue.primary_key is the lookup of a synced table's key that the functions of 001 each spelled
-- out; the ones written from here on call it.
CREATE FUNCTION queue.primary_key(target regclass, OUT key_column text, OUT key_type text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = target AND i.indisprimary AND i.indnatts = 1
$$;

CREATE OR REPLACE FUNCTION queue.bump_versions(target regclass, keys text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  table_name text;
  key_column text;
  key_type text;
BEGIN
  SELECT c.relname INTO table_name FROM pg_class c WHERE c.oid = target;
  SELECT k.key_column, k.key_type INTO key_column, key_type FROM queue.primary_key(target) k;
  PERFORM nextval('queue.document_version');
  EXECUTE format(
    'INSERT INTO queue.%1$I AS v (%2$I, version)
     SELECT k::%3$s, nextval(''queue.document_version'') FROM unnest($1) AS k
     ON CONFLICT (%2$I) DO UPDATE SET version = EXCLUDED.version',
    table_name || '_version', key_column, key_type) USING keys;
END
$$;

REVOKE ALL ON FUNCTION queue.primary_key(regclass) FROM PUBLIC;
