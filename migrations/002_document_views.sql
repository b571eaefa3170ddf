-- The search documents. Each synced table has one view here, keyed by the table's primary key;
-- the sync worker indexes whatever row the view returns for an id and deletes the document when
-- it returns none (so a WHERE clause here hides rows from search). Change a document by
-- replacing its view in a new migration: add columns, rename them, or join other tables. A join
-- is read when the row is synced; changes to the joined table alone do not enqueue a sync.

CREATE VIEW queue.listings_document AS
SELECT l.*
FROM public.listings l;

CREATE VIEW queue.inventory_items_document AS
SELECT i.*
FROM public.inventory_items i;

REVOKE ALL ON queue.listings_document, queue.inventory_items_document FROM PUBLIC;
