import type { Env } from './env.ts';
import { ConfigError } from './env.ts';

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

/** pg-boss queue options, as `createQueue` takes them. */
export interface QueueOptions {
  policy: 'standard' | 'stately';
  partition: boolean;
  notify: boolean;
  retryLimit: number;
  retryDelay: number;
  retryBackoff: boolean;
  retryDelayMax?: number;
  expireInSeconds: number;
  retentionSeconds: number;
  deleteAfterSeconds: number;
  deadLetter?: string;
}

export interface WorkerSettings {
  batchSize: number;
  concurrency: number;
  pollingIntervalSeconds: number;
}

/** A JSON Schema (draft 7, as Fastify's ajv reads it) for a queue's job data. */
export type DataSchema = Record<string, unknown>;

export interface QueueConfig {
  name: string;
  kind: 'sync' | 'dead-letter' | 'maintenance';
  description: string;
  options: QueueOptions;
  /** Job data this queue accepts from the API and its workers; validated at both ends. */
  dataSchema: DataSchema;
  /** The dead-letter queue's source queue, for a dead-letter queue. */
  source?: string;
  worker: WorkerSettings | null;
}

/** What a search-sync job carries: the row's identity, never its state. */
export function syncDataSchema(table: SyncTable): DataSchema {
  return {
    type: 'object',
    required: ['table', 'id'],
    additionalProperties: false,
    properties: {
      table: { const: table.table },
      id: { type: 'string', minLength: 1, maxLength: 512 },
    },
  };
}

/**
 * Waiting sync jobs must never be swept away by pg-boss's retention (it deletes queued jobs past
 * `keep_until`), or an Elasticsearch outage longer than that would lose updates. Ten years is
 * "never" in practice and still fits pg-boss's int column.
 */
const QUEUED_NEVER_EXPIRES_SECONDS = 10 * 365 * 86_400;

/** The queue of scheduled `reconcile --repair` runs (RECONCILE_CRON); the service works it. */
export const RECONCILE_QUEUE = 'maintenance.reconcile';

/** What a reconcile job carries: whether to repair, and optionally which tables. */
export function reconcileDataSchema(): DataSchema {
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      repair: { type: 'boolean' },
      tables: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: SYNC_TABLES.map((t) => t.table) } },
    },
  };
}

/**
 * A reconcile over a large index takes minutes; one stuck longer than this is retried. Stately: a
 * run that comes due while one is active waits, and never two wait.
 */
const RECONCILE_EXPIRE_SECONDS = 4 * 3600;

function reconcileQueue(env: Env): QueueConfig {
  return {
    name: RECONCILE_QUEUE,
    kind: 'maintenance',
    description: 'Scheduled reconcile --repair of every synced table (RECONCILE_CRON); results in queue.reconcile_runs.',
    options: {
      policy: 'stately',
      partition: false,
      notify: true,
      retryLimit: 2,
      retryDelay: 300,
      retryBackoff: true,
      expireInSeconds: RECONCILE_EXPIRE_SECONDS,
      // A run waits at most a day for a worker; the next one is due by then.
      retentionSeconds: 86_400,
      deleteAfterSeconds: env.completedRetentionSeconds,
    },
    dataSchema: reconcileDataSchema(),
    worker: { batchSize: 1, concurrency: 1, pollingIntervalSeconds: 60 },
  };
}

/** Every queue `migrate` creates, dead-letter queues first (a queue references its dead letter). */
export function queueConfigs(env: Env): QueueConfig[] {
  const overrides = parseOverrides(env.queueOverrides);
  const deadLetters = SYNC_TABLES.map((t): QueueConfig => ({
    name: t.deadLetter,
    kind: 'dead-letter',
    description: `Jobs of ${t.queue} that could not succeed, with their last error; replay moves them back.`,
    options: deadLetterOptions(env),
    dataSchema: { type: 'object' },
    source: t.queue,
    worker: null,
  }));
  const syncQueues = SYNC_TABLES.map((t): QueueConfig => ({
    name: t.queue,
    kind: 'sync',
    description: `Keeps the ${t.table} index equal to ${t.documentView}; filled by triggers on ${t.schema}.${t.table}.`,
    options: syncQueueOptions(env, t.deadLetter),
    dataSchema: syncDataSchema(t),
    worker: { ...defaultWorker(env), ...overrides[t.queue] },
  }));
  return [...deadLetters, ...syncQueues, reconcileQueue(env)];
}

function syncQueueOptions(env: Env, deadLetter: string): QueueOptions {
  return {
    // stately: at most one job per row waiting in each of created/retry, and at most one active, and
    // pg-boss's fetch never claims a row's job while another of that row is active. A write whose
    // row already has a job in `created` joins it instead of adding one (queue.T_enqueue()).
    policy: 'stately',
    // Its own partition: 11 indexes to maintain on insert instead of the shared table's 17.
    partition: true,
    notify: true,
    retryLimit: env.syncRetryLimit,
    retryDelay: env.syncRetryDelaySeconds,
    retryBackoff: true,
    retryDelayMax: env.syncRetryDelayMaxSeconds,
    expireInSeconds: env.syncExpireSeconds,
    retentionSeconds: QUEUED_NEVER_EXPIRES_SECONDS,
    deleteAfterSeconds: env.completedRetentionSeconds,
    deadLetter,
  };
}

function deadLetterOptions(env: Env): QueueOptions {
  return {
    policy: 'standard',
    partition: false,
    notify: false,
    retryLimit: 0,
    retryDelay: 0,
    retryBackoff: false,
    expireInSeconds: env.syncExpireSeconds,
    // Dead letters wait in `created` (nothing works them), so retention is what keeps them.
    retentionSeconds: env.failedRetentionSeconds,
    deleteAfterSeconds: env.failedRetentionSeconds,
  };
}

function defaultWorker(env: Env): WorkerSettings {
  return {
    batchSize: env.syncBatchSize,
    concurrency: env.syncConcurrency,
    pollingIntervalSeconds: env.syncPollingIntervalSeconds,
  };
}

const WORKER_KEYS: Record<keyof WorkerSettings, [number, number]> = {
  batchSize: [1, 10_000],
  concurrency: [1, 64],
  pollingIntervalSeconds: [1, 300],
};

function parseOverrides(raw: unknown): Record<string, Partial<WorkerSettings>> {
  const problems: string[] = [];
  const known = new Set(SYNC_TABLES.map((t) => t.queue));
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(['QUEUE_OVERRIDES must be a JSON object keyed by queue name']);
  }
  const result: Record<string, Partial<WorkerSettings>> = {};
  for (const [queue, settings] of Object.entries(raw)) {
    if (!known.has(queue)) {
      problems.push(`QUEUE_OVERRIDES names unknown queue "${queue}" (known: ${[...known].join(', ')})`);
      continue;
    }
    if (typeof settings !== 'object' || settings === null) {
      problems.push(`QUEUE_OVERRIDES["${queue}"] must be an object`);
      continue;
    }
    const parsed: Partial<WorkerSettings> = {};
    for (const [key, value] of Object.entries(settings)) {
      const range = WORKER_KEYS[key as keyof WorkerSettings];
      if (!range) {
        problems.push(`QUEUE_OVERRIDES["${queue}"].${key} is not a setting (use ${Object.keys(WORKER_KEYS).join(', ')})`);
      } else if (typeof value !== 'number' || !Number.isInteger(value) || value < range[0] || value > range[1]) {
        problems.push(`QUEUE_OVERRIDES["${queue}"].${key} must be a whole number between ${range[0]} and ${range[1]}`);
      } else {
        parsed[key as keyof WorkerSettings] = value;
      }
    }
    result[queue] = parsed;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return result;
}
