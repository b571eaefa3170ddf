-- A TRUNCATE of a synced table enqueues the delete of every document it empties.
--
-- Row triggers and statement triggers with transition tables do not fire on TRUNCATE, so a
-- truncated table used to leave all its documents in the index until reconcile found them as
-- orphans. A BEFORE TRUNCATE statement trigger still sees the rows: it reads their keys and
-- resyncs them as `reindex` does (queue.resync with new versions), so each gets a tombstone
-- version above anything the index holds. The jobs commit with the TRUNCATE, their workers find
-- the rows gone and delete the documents; a transaction that truncates and inserts the same keys
-- again gives them versions above those tombstones, as any insert after a delete does. Tables
-- truncated by CASCADE fire their own trigger.
--
-- The price is the TRUNCATE's: a read of every key and a job per row, in its transaction, so it
-- takes about as long as a DELETE of every row instead of an instant (RELIABILITY.md has the figure).
CREATE FUNCTION queue.sync_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  key_column text;
  keys text[];
BEGIN
  SELECT k.key_column INTO key_column FROM queue.primary_key(TG_RELID) k;
  EXECUTE format('SELECT array_agg(%I::text) FROM %s', key_column, TG_RELID::regclass) INTO keys;
  IF keys IS NOT NULL THEN
    PERFORM queue.resync(TG_RELID::regclass, keys, true);
  END IF;
  RETURN NULL;
END
$$;

-- Run by `migrate` after queue.attach_sync, for every synced table.
CREATE FUNCTION queue.attach_truncate_sync(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS queue_sync_truncate ON %s', target);
  EXECUTE format('CREATE TRIGGER queue_sync_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION queue.sync_truncated()', target);
END
$$;

-- The same for image cleanup: a TRUNCATE of inventory_items enqueues the cleanup of the images of
-- every item it removes, as a DELETE does. One function builds an item's cleanup job for both.
CREATE FUNCTION queue.image_cleanup_job(item public.inventory_items) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_build_object('itemId', item.id::text, 'sku', item.sku, 'imageUrls', to_jsonb(urls.list))
  FROM (SELECT array_agg(u ORDER BY n) AS list FROM unnest(item.image_urls) WITH ORDINALITY AS x(u, n) WHERE u <> '') urls
  WHERE urls.list IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION queue.inventory_items_image_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM queue.enqueue_jobs('image-cleanup', ARRAY(
    SELECT job FROM old_rows o, queue.image_cleanup_job(o) AS job WHERE job IS NOT NULL
  ));
  RETURN NULL;
END
$$;

CREATE FUNCTION queue.inventory_items_truncate_image_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM queue.enqueue_jobs('image-cleanup', ARRAY(
    SELECT job FROM public.inventory_items i, queue.image_cleanup_job(i) AS job WHERE job IS NOT NULL
  ));
  RETURN NULL;
END
$$;

CREATE TRIGGER queue_image_cleanup_truncate BEFORE TRUNCATE ON public.inventory_items
  FOR EACH STATEMENT EXECUTE FUNCTION queue.inventory_items_truncate_image_cleanup();

REVOKE ALL ON FUNCTION
  queue.sync_truncated(),
  queue.attach_truncate_sync(regclass),
  queue.image_cleanup_job(public.inventory_items),
  queue.inventory_items_truncate_image_cleanup()
FROM PUBLIC;
