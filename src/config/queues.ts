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

export interface QueueConfig {
  name: string;
  options: QueueOptions;
  worker: WorkerSettings | null;
}

/**
 * Waiting sync jobs must never be swept away by pg-boss's retention (it deletes queued jobs past
 * `keep_until`), or an Elasticsearch outage longer than that would lose updates. Ten years is
 * "never" in practice and still fits pg-boss's int column.
 */
const QUEUED_NEVER_EXPIRES_SECONDS = 10 * 365 * 86_400;

/** Every queue `migrate` creates, dead-letter queues first (a queue references its dead letter). */
export function queueConfigs(env: Env): QueueConfig[] {
  const overrides = parseOverrides(env.queueOverrides);
  const deadLetters = SYNC_TABLES.map((t) => ({
    name: t.deadLetter,
    options: deadLetterOptions(env),
    worker: null,
  }));
  const syncQueues = SYNC_TABLES.map((t) => ({
    name: t.queue,
    options: syncQueueOptions(env, t.deadLetter),
    worker: { ...defaultWorker(env), ...overrides[t.queue] },
  }));
  return [...deadLetters, ...syncQueues];
}

function syncQueueOptions(env: Env, deadLetter: string): QueueOptions {
  return {
    // stately: at most one job per row waiting in each of created/retry, and at most one active, and
    // pg-boss's fetch never claims a row's job while another of that row is active. The trigger
    // coalesces into a waiting job (created or retry) instead of adding one: see queue.enqueue().
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
