import type { Env } from './env.ts';
import { ConfigError } from './env.ts';
import { unsupportedSchemaKeywords } from './json-schema.ts';
import { SYNC_TABLES, type SyncTable } from './sync-tables.ts';
import { TASK_QUEUES, type TaskQueue } from './task-queues.ts';

export { SYNC_TABLES, findSyncTable, indexAlias, type IndexMappings, type SyncTable } from './sync-tables.ts';
export type { TaskQueue } from './task-queues.ts';

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

/**
 * A worker's settings as pg-boss's `work()` takes them. While NOTIFY is active pg-boss polls at
 * `notifyPollingIntervalSeconds` (30 s by default), not `pollingIntervalSeconds`: the queue's own
 * interval applies in both modes, so a job whose NOTIFY was skipped waits no longer than it.
 */
export function workOptions(settings: WorkerSettings) {
  return {
    batchSize: settings.batchSize,
    localConcurrency: settings.concurrency,
    pollingIntervalSeconds: settings.pollingIntervalSeconds,
    notifyPollingIntervalSeconds: settings.pollingIntervalSeconds,
  };
}

/** A JSON Schema (draft 7, as Fastify's ajv reads it) for a queue's job data. */
export type DataSchema = Record<string, unknown>;

/** At most `limit` jobs of a queue start in any `periodSeconds`, across all workers and processes. */
export interface RateLimit {
  limit: number;
  periodSeconds: number;
}

export interface QueueConfig {
  name: string;
  /** sync: search-sync of a table; task: a TaskQueue with a handler (src/jobs/handlers/). */
  kind: 'sync' | 'task' | 'dead-letter' | 'maintenance';
  description: string;
  options: QueueOptions;
  /** Job data this queue accepts from the API and its workers; validated at both ends. */
  dataSchema: DataSchema;
  /** The dead-letter queue's source queue, for a dead-letter queue. */
  source?: string;
  worker: WorkerSettings | null;
  /** Task queues only; enforced in Postgres (queue.take_permits), so it holds across processes. */
  rateLimit?: RateLimit;
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

/**
 * Every queue `migrate` creates, dead-letter queues first (a queue references its dead letter):
 * the search-sync queues of SYNC_TABLES and the task queues of TASK_QUEUES (or `tasks`, which
 * tests use to add a queue of their own).
 */
export function queueConfigs(env: Env, tasks: readonly TaskQueue[] = TASK_QUEUES): QueueConfig[] {
  assertTaskQueues(tasks);
  const overrides = parseOverrides(env.queueOverrides, tasks);
  const deadLetters = [
    ...SYNC_TABLES.map((t) => deadLetterConfig(env, t.deadLetter, t.queue)),
    ...tasks.map((q) => deadLetterConfig(env, `${q.name}.dead`, q.name)),
  ];
  const syncQueues = SYNC_TABLES.map((t): QueueConfig => ({
    name: t.queue,
    kind: 'sync',
    description: `Keeps the ${t.table} index equal to ${t.documentView}; filled by triggers on ${t.schema}.${t.table}.`,
    options: syncQueueOptions(env, t.deadLetter),
    dataSchema: syncDataSchema(t),
    worker: { ...defaultWorker(env), ...pick(overrides[t.queue], WORKER_KEYS) },
  }));
  return [...deadLetters, ...syncQueues, reconcileQueue(env), ...tasks.map((q) => taskQueueConfig(env, q, overrides[q.name] ?? {}))];
}

function deadLetterConfig(env: Env, name: string, source: string): QueueConfig {
  return {
    name,
    kind: 'dead-letter',
    description: `Jobs of ${source} that could not succeed, with their last error; replay moves them back.`,
    options: deadLetterOptions(env),
    dataSchema: { type: 'object' },
    source,
    worker: null,
  };
}

function taskQueueConfig(env: Env, queue: TaskQueue, override: Override): QueueConfig {
  const retryDelay = override.retryDelaySeconds ?? queue.retryDelaySeconds;
  const retryDelayMax = override.retryDelayMaxSeconds ?? queue.retryDelayMaxSeconds;
  const rateLimit = override.rateLimit === undefined ? queue.rateLimit : override.rateLimit ?? undefined;
  return {
    name: queue.name,
    kind: 'task',
    description: queue.description,
    options: {
      policy: 'standard',
      partition: false,
      notify: true,
      retryLimit: override.retryLimit ?? queue.retryLimit,
      retryDelay,
      retryBackoff: queue.retryBackoff,
      ...(queue.retryBackoff && retryDelayMax !== undefined ? { retryDelayMax: Math.max(retryDelayMax, retryDelay) } : {}),
      expireInSeconds: override.expireInSeconds ?? queue.expireInSeconds,
      retentionSeconds: queue.retentionSeconds ?? QUEUED_NEVER_EXPIRES_SECONDS,
      deleteAfterSeconds: env.completedRetentionSeconds,
      deadLetter: `${queue.name}.dead`,
    },
    dataSchema: queue.dataSchema,
    worker: {
      batchSize: override.batchSize ?? queue.batchSize,
      concurrency: override.concurrency ?? queue.concurrency,
      pollingIntervalSeconds: override.pollingIntervalSeconds ?? queue.pollingIntervalSeconds ?? env.syncPollingIntervalSeconds,
    },
    ...(rateLimit ? { rateLimit } : {}),
  };
}

const QUEUE_NAME = /^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$/;

/** A definition mistake stops migrate and start with its name, before anything is created. */
function assertTaskQueues(tasks: readonly TaskQueue[]): void {
  const problems: string[] = [];
  const seen = new Set<string>([...SYNC_TABLES.flatMap((t) => [t.queue, t.deadLetter]), RECONCILE_QUEUE]);
  for (const q of tasks) {
    if (!QUEUE_NAME.test(q.name) || q.name.endsWith('.dead') || /^(search-sync|maintenance)\./.test(q.name)) {
      problems.push(`task queue "${q.name}": a name is lower-case words joined by - _ or ., not ending in .dead nor starting with search-sync. or maintenance.`);
    }
    if (seen.has(q.name)) problems.push(`task queue "${q.name}" is defined twice`);
    seen.add(q.name);
    for (const keyword of unsupportedSchemaKeywords(q.dataSchema)) {
      problems.push(`task queue "${q.name}": dataSchema uses ${keyword}, which queue.send cannot check (see src/config/json-schema.ts)`);
    }
    if (q.dataSchema.type !== 'object') problems.push(`task queue "${q.name}": dataSchema must describe an object (type: "object")`);
    if (q.rateLimit) checkRateLimit(q.rateLimit, `task queue "${q.name}": rateLimit`, problems);
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

function checkRateLimit(value: unknown, where: string, problems: string[]): value is RateLimit {
  const limit = (value as RateLimit | null)?.limit;
  const period = (value as RateLimit | null)?.periodSeconds;
  const whole = (n: unknown, max: number) => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= max;
  if (typeof value !== 'object' || value === null || !whole(limit, 1_000_000) || !whole(period, 86_400) || Object.keys(value).length !== 2) {
    problems.push(`${where} must be {"limit": 1..1000000, "periodSeconds": 1..86400}`);
    return false;
  }
  return true;
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

type Range = [number, number];

const WORKER_KEYS = {
  batchSize: [1, 10_000],
  concurrency: [1, 64],
  pollingIntervalSeconds: [1, 300],
} satisfies Record<keyof WorkerSettings, Range>;

/** Queue settings an operator may override for a task queue (search-sync has SYNC_* variables). */
const TASK_KEYS = {
  retryLimit: [0, 100],
  retryDelaySeconds: [0, 86_400],
  retryDelayMaxSeconds: [1, 86_400],
  expireInSeconds: [1, 86_400],
} satisfies Record<string, Range>;

type Override = Partial<Record<keyof typeof WORKER_KEYS | keyof typeof TASK_KEYS, number>> & { rateLimit?: RateLimit | null };

function pick(override: Override | undefined, keys: Record<string, Range>): Partial<WorkerSettings> {
  return Object.fromEntries(Object.entries(override ?? {}).filter(([k]) => k in keys));
}

function parseOverrides(raw: unknown, tasks: readonly TaskQueue[]): Record<string, Override> {
  const problems: string[] = [];
  const syncQueues = new Set(SYNC_TABLES.map((t) => t.queue));
  const taskQueues = new Set(tasks.map((q) => q.name));
  const known = [...syncQueues, ...taskQueues];
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(['QUEUE_OVERRIDES must be a JSON object keyed by queue name']);
  }
  const result: Record<string, Override> = {};
  for (const [queue, settings] of Object.entries(raw)) {
    if (!syncQueues.has(queue) && !taskQueues.has(queue)) {
      problems.push(`QUEUE_OVERRIDES names unknown queue "${queue}" (known: ${known.join(', ')})`);
      continue;
    }
    if (typeof settings !== 'object' || settings === null) {
      problems.push(`QUEUE_OVERRIDES["${queue}"] must be an object`);
      continue;
    }
    const isTask = taskQueues.has(queue);
    const ranges: Record<string, Range> = isTask ? { ...WORKER_KEYS, ...TASK_KEYS } : WORKER_KEYS;
    const parsed: Override = {};
    for (const [key, value] of Object.entries(settings)) {
      const where = `QUEUE_OVERRIDES["${queue}"].${key}`;
      if (key === 'rateLimit' && isTask) {
        if (value === null) parsed.rateLimit = null;
        else if (checkRateLimit(value, where, problems)) parsed.rateLimit = value;
        continue;
      }
      const range = ranges[key];
      if (!range) {
        const names = [...Object.keys(ranges), ...(isTask ? ['rateLimit'] : [])];
        problems.push(`${where} is not a setting${isTask ? '' : ' of a search-sync queue'} (use ${names.join(', ')})`);
      } else if (typeof value !== 'number' || !Number.isInteger(value) || value < range[0] || value > range[1]) {
        problems.push(`${where} must be a whole number between ${range[0]} and ${range[1]}`);
      } else {
        parsed[key as keyof typeof WORKER_KEYS] = value;
      }
    }
    result[queue] = parsed;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return result;
}
