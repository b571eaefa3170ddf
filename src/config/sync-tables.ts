// The app tables kept in sync with Elasticsearch. Its own module so that task-queues.ts can name
// them without importing queues.ts, which imports it.

/** A table of the app kept in sync with one Elasticsearch index. */
export interface SyncTable {
  /** Unqualified table name; also the index alias (after INDEX_PREFIX). */
  table: string;
  schema: string;
  /** Single-column primary key; its text form is the document `_id` and the job's key. */
  key: string;
  queue: string;
  deadLetter: string;
  /** The SQL view that defines the search document (see migrations/). */
  documentView: string;
  /** Elasticsearch mappings of the document; unlisted columns are mapped dynamically. */
  mappings: IndexMappings;
}

export interface IndexMappings {
  dynamic?: boolean | 'strict';
  properties: Record<string, Record<string, unknown>>;
}

const keyword = { type: 'keyword' };
const date = { type: 'date' };
const text = { type: 'text', fields: { raw: { type: 'keyword', ignore_above: 256 } } };

/**
 * Adding a synced table is one entry here plus one migration with its document view. Everything
 * else (queues, triggers, workers, index, stats) follows from this list.
 */
export const SYNC_TABLES: readonly SyncTable[] = [
  syncTable('listings', {
    properties: {
      id: keyword,
      seller_id: keyword,
      title: text,
      description: { type: 'text' },
      price_cents: { type: 'long' },
      currency: keyword,
      status: keyword,
      tags: keyword,
      attributes: { type: 'flattened' },
      created_at: date,
      updated_at: date,
    },
  }),
  syncTable('inventory_items', {
    properties: {
      id: keyword,
      listing_id: keyword,
      sku: keyword,
      quantity: { type: 'integer' },
      location: keyword,
      image_urls: { type: 'keyword', index: false },
      created_at: date,
      updated_at: date,
    },
  }),
];

function syncTable(table: string, mappings: IndexMappings): SyncTable {
  return {
    table,
    schema: 'public',
    key: 'id',
    queue: `search-sync.${table}`,
    deadLetter: `search-sync.${table}.dead`,
    documentView: `queue.${table}_document`,
    // `id` is a keyword so reconcile can page by it: sorting on _id is refused by Elasticsearch.
    mappings: { ...mappings, properties: { id: keyword, ...mappings.properties } },
  };
}

/** The alias searches and sync go through: the table's name after INDEX_PREFIX. */
export const indexAlias = (indexPrefix: string, table: SyncTable) => `${indexPrefix}${table.table}`;

export function findSyncTable(name: string): SyncTable | undefined {
  return SYNC_TABLES.find((t) => t.table === name);
}
