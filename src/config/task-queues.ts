// The queues that carry work other than search sync. Adding one is a definition here (appended
// to TASK_QUEUES) and a handler file, src/jobs/handlers/<name>.ts: `migrate` creates the queue and
// its dead-letter queue and registers the payload schema (queue.send checks it), the API validates
// enqueues against it, the service runs the handler, and the stats views, metrics and dashboard
// list the queue like any other. See README, "Adding a queue".
import { SYNC_TABLES } from './sync-tables.ts';
import type { DataSchema, RateLimit } from './queues.ts';

/**
 * One queue: its pg-boss settings, how its workers claim jobs, and the JSON Schema of its payload.
 * `P` is the payload type the handler receives; the schema is what enforces it, at enqueue (API and
 * queue.send) and again in the worker, so keep the two in step (test/task-queues.test.ts checks
 * samples of each against both).
 */
export interface TaskQueue<P = unknown> {
  name: string;
  description: string;
  /** Retries after the first attempt; then the job moves to the dead-letter queue. */
  retryLimit: number;
  retryDelaySeconds: number;
  /** Doubles the delay each retry (with jitter), up to retryDelayMaxSeconds. */
  retryBackoff: boolean;
  retryDelayMaxSeconds?: number;
  /** A claimed job not settled in this time is retried (its worker is taken for dead). */
  expireInSeconds: number;
  /** Jobs one worker claims and runs at once. */
  batchSize: number;
  /** Batches in flight per process. */
  concurrency: number;
  pollingIntervalSeconds?: number;
  /** At most `limit` jobs start in any `periodSeconds`, across every worker of every process. */
  rateLimit?: RateLimit;
  /** How long a waiting job is kept; never deleted (in practice) when unset, so nothing is lost. */
  retentionSeconds?: number;
  /** The JSON Schema of the payload (the subset queue.send checks; see schemaProblems()). */
  dataSchema: DataSchema;
  /** Not read: carries the payload type from the definition to its handler. */
  readonly payload?: P;
}

export function defineTaskQueue<P>(definition: Omit<TaskQueue<P>, 'payload'>): TaskQueue<P> {
  return definition;
}

const EMAIL = { type: 'string', format: 'email', maxLength: 320 } as const;
const emailList = { type: 'array', items: EMAIL, minItems: 1, maxItems: 50 } as const;

export interface EmailPayload {
  to: string[];
  /** A template of EMAIL_TEMPLATES_DIR: `<template>.txt` (and `<template>.html` when present). */
  template: string;
  /** Values of the template's `{{name}}` placeholders. */
  data?: Record<string, string | number | boolean>;
  cc?: string[];
  bcc?: string[];
  replyTo?: string;
}

export const EMAIL_QUEUE = defineTaskQueue<EmailPayload>({
  name: 'email',
  description: 'Sends an email through SMTP_URL from a template and its data; a recipient the server refuses (5xx) is dead-lettered at once.',
  retryLimit: 5,
  retryDelaySeconds: 30,
  retryBackoff: true,
  retryDelayMaxSeconds: 3600,
  expireInSeconds: 300,
  batchSize: 5,
  concurrency: 2,
  dataSchema: {
    type: 'object',
    required: ['to', 'template'],
    additionalProperties: false,
    properties: {
      to: emailList,
      template: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,63}$' },
      data: { type: 'object', maxProperties: 100, additionalProperties: { type: ['string', 'number', 'boolean'], maxLength: 10_000 } },
      cc: emailList,
      bcc: emailList,
      replyTo: EMAIL,
    },
  },
});

export type ExportFormat = 'csv' | 'ndjson';
export type ExportOperator = 'eq' | 'ne' | 'lt' | 'lte' | 'gt' | 'gte' | 'in' | 'like';
export type ExportValue = string | number | boolean | null | (string | number | boolean)[];

export interface ExportCondition {
  column: string;
  /** `eq`/`ne` with null test IS NULL / IS NOT NULL; `in` takes an array; `like` a SQL pattern. */
  op: ExportOperator;
  value: ExportValue;
}

export interface ExportPayload {
  table: string;
  format: ExportFormat;
  /** The columns, in this order; all of them when left out. */
  columns?: string[];
  /** Every condition must hold (AND). */
  filter?: ExportCondition[];
  limit?: number;
}

const COLUMN = { type: 'string', pattern: '^[a-z_][a-z0-9_]{0,62}$' } as const;

export const EXPORT_QUEUE = defineTaskQueue<ExportPayload>({
  name: 'export',
  description: 'Exports the rows of a synced table that match a filter to a CSV or NDJSON file in EXPORT_DIR, streaming; the job output has the path and row count.',
  retryLimit: 2,
  retryDelaySeconds: 60,
  retryBackoff: true,
  expireInSeconds: 3600,
  batchSize: 1,
  concurrency: 1,
  dataSchema: {
    type: 'object',
    required: ['table', 'format'],
    additionalProperties: false,
    properties: {
      table: { type: 'string', enum: SYNC_TABLES.map((t) => t.table) },
      format: { type: 'string', enum: ['csv', 'ndjson'] },
      columns: { type: 'array', items: COLUMN, minItems: 1, maxItems: 200, uniqueItems: true },
      filter: {
        type: 'array',
        maxItems: 20,
        items: {
          type: 'object',
          required: ['column', 'op', 'value'],
          additionalProperties: false,
          properties: {
            column: COLUMN,
            op: { type: 'string', enum: ['eq', 'ne', 'lt', 'lte', 'gt', 'gte', 'in', 'like'] },
            value: { type: ['string', 'number', 'boolean', 'null', 'array'], maxLength: 1000, maxItems: 1000, items: { type: ['string', 'number', 'boolean'], maxLength: 1000 } },
          },
        },
      },
      limit: { type: 'integer', minimum: 1, maximum: 100_000_000 },
    },
  },
});

export interface ImageCleanupPayload {
  /** The deleted inventory item. */
  itemId: string;
  sku?: string;
  imageUrls: string[];
}

export const IMAGE_CLEANUP_QUEUE = defineTaskQueue<ImageCleanupPayload>({
  name: 'image-cleanup',
  description: "Deletes a deleted inventory item's images from storage (IMAGE_STORAGE); filled by a trigger on inventory_items.",
  retryLimit: 8,
  retryDelaySeconds: 10,
  retryBackoff: true,
  retryDelayMaxSeconds: 1800,
  expireInSeconds: 120,
  batchSize: 10,
  concurrency: 1,
  dataSchema: {
    type: 'object',
    required: ['itemId', 'imageUrls'],
    additionalProperties: false,
    properties: {
      itemId: { type: 'string', minLength: 1, maxLength: 200 },
      sku: { type: 'string', maxLength: 200 },
      imageUrls: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 2048 }, minItems: 1, maxItems: 200 },
    },
  },
});

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface ExternalApiPayload {
  method: HttpMethod;
  /** Below EXTERNAL_API_URL; a job cannot name another host. */
  path: string;
  query?: Record<string, string>;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as Idempotency-Key, so a retried call is not applied twice by an API that honours it. */
  idempotencyKey?: string;
}

export const EXTERNAL_API_QUEUE = defineTaskQueue<ExternalApiPayload>({
  name: 'external-api',
  description: "Calls the partner API at EXTERNAL_API_URL within its rate limit (one call a second, so 300 in any 5 minutes); 4xx answers other than 408 and 429 are dead-lettered at once.",
  retryLimit: 8,
  retryDelaySeconds: 5,
  retryBackoff: true,
  retryDelayMaxSeconds: 600,
  expireInSeconds: 120,
  batchSize: 5,
  concurrency: 1,
  rateLimit: { limit: 1, periodSeconds: 1 },
  dataSchema: {
    type: 'object',
    required: ['method', 'path'],
    additionalProperties: false,
    properties: {
      method: { type: 'string', enum: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] },
      path: { type: 'string', pattern: '^/\\S*$', maxLength: 2048 },
      query: { type: 'object', maxProperties: 50, additionalProperties: { type: 'string', maxLength: 2048 } },
      body: {},
      idempotencyKey: { type: 'string', minLength: 1, maxLength: 255 },
    },
  },
});

/** Every task queue, in the order `migrate` creates them. */
export const TASK_QUEUES: readonly TaskQueue[] = [EMAIL_QUEUE, EXPORT_QUEUE, IMAGE_CLEANUP_QUEUE, EXTERNAL_API_QUEUE];
