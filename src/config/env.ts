// Every environment variable the service reads, with its default and meaning. The README's
// configuration table is checked against this list by a test, so the two cannot drift.
import { CronExpressionParser } from 'cron-parser';

export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Parser<T> = (raw: string, name: string) => T;

interface Variable<T> {
  name: string;
  description: string;
  /** How the default reads in the README; undefined means "unset". */
  defaultText?: string;
  secret?: boolean;
  parse: Parser<T>;
  fallback: T;
}

const fail = (name: string, message: string): never => {
  throw new Error(`${name} ${message}`);
};

const text: Parser<string> = (raw) => raw;

const integer = (min: number, max: number): Parser<number> => (raw, name) => {
  if (!/^-?\d+$/.test(raw.trim())) fail(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) fail(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
};

const boolean: Parser<boolean> = (raw, name) => {
  const value = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(value)) return true;
  if (['false', '0', 'no', 'off'].includes(value)) return false;
  return fail(name, `must be true or false, got "${raw}"`);
};

const url = (protocols: string[]): Parser<string> => (raw, name) => {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    return fail(name, `is not a valid URL (expected ${protocols.join(' or ')}//...)`);
  }
  if (!protocols.includes(parsed.protocol)) {
    fail(name, `must use ${protocols.join(' or ')}, got ${parsed.protocol}`);
  }
  return raw;
};

const oneOf = <T extends string>(values: readonly T[]): Parser<T> => (raw, name) => {
  if (!(values as readonly string[]).includes(raw)) fail(name, `must be one of ${values.join(', ')}, got "${raw}"`);
  return raw as T;
};

const list: Parser<string[]> = (raw) => raw.split(',').map((s) => s.trim()).filter(Boolean);

const json: Parser<unknown> = (raw, name) => {
  try {
    return JSON.parse(raw) as unknown;
  } catch (err) {
    return fail(name, `is not valid JSON: ${(err as Error).message}`);
  }
};

/** A cron expression as pg-boss's scheduler reads it (five or six fields, UTC), or `off`. */
const cronOrOff: Parser<string | null> = (raw, name) => {
  const value = raw.trim();
  if (value.toLowerCase() === 'off') return null;
  if (value.split(/\s+/).length < 5) fail(name, `must be a cron expression of five fields (minute hour day month weekday) or "off", got "${raw}"`);
  try {
    CronExpressionParser.parse(value, { tz: 'UTC', strict: false });
  } catch (err) {
    fail(name, `is not a valid cron expression ("${raw}"): ${(err as Error).message}`);
  }
  return value;
};

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const variables = {
  databaseUrl: {
    name: 'DATABASE_URL',
    description: 'Postgres connection string. Unset: `start` runs an embedded Postgres for a local demo.',
    secret: true,
    parse: url(['postgres:', 'postgresql:']),
    fallback: undefined as string | undefined,
  },
  demoDataDir: {
    name: 'DEMO_DATA_DIR',
    description: 'Without DATABASE_URL: where the embedded demo keeps its Postgres data and generated API token (relative to the working directory).',
    defaultText: '.data',
    parse: text,
    fallback: '.data',
  },
  demoPostgresPort: {
    name: 'DEMO_POSTGRES_PORT',
    description: "Without DATABASE_URL: the embedded demo Postgres's port on 127.0.0.1.",
    defaultText: '54329',
    parse: integer(1, 65_535),
    fallback: 54_329,
  },
  elasticsearchUrl: {
    name: 'ELASTICSEARCH_URL',
    description: 'Elasticsearch endpoint. Unset: sync waits (jobs stay queued) and `/ready` says why.',
    parse: url(['http:', 'https:']),
    fallback: undefined as string | undefined,
  },
  elasticsearchApiKey: {
    name: 'ELASTICSEARCH_API_KEY',
    description: 'API key for Elasticsearch (takes precedence over username/password).',
    secret: true,
    parse: text,
    fallback: undefined as string | undefined,
  },
  elasticsearchUsername: {
    name: 'ELASTICSEARCH_USERNAME',
    description: 'Basic-auth user for Elasticsearch.',
    parse: text,
    fallback: undefined as string | undefined,
  },
  elasticsearchPassword: {
    name: 'ELASTICSEARCH_PASSWORD',
    description: 'Basic-auth password for Elasticsearch.',
    secret: true,
    parse: text,
    fallback: undefined as string | undefined,
  },
  elasticsearchRequestTimeoutMs: {
    name: 'ELASTICSEARCH_REQUEST_TIMEOUT_MS',
    description: 'Timeout of every Elasticsearch request; a timed-out bulk is retried with backoff.',
    defaultText: '30000',
    parse: integer(100, 600_000),
    fallback: 30_000,
  },
  indexPrefix: {
    name: 'INDEX_PREFIX',
    description: 'Prepended to every index and alias name (`staging_` gives `staging_listings`).',
    defaultText: '(empty)',
    parse: (raw: string, name: string) => (/^[a-z0-9_-]*$/.test(raw) ? raw : fail(name, 'may only contain a-z, 0-9, _ and -')),
    fallback: '',
  },
  port: {
    name: 'PORT',
    description: 'HTTP listen port.',
    defaultText: '3000',
    parse: integer(0, 65_535),
    fallback: 3000,
  },
  host: {
    name: 'HOST',
    description: 'HTTP listen address.',
    defaultText: '0.0.0.0',
    parse: text,
    fallback: '0.0.0.0',
  },
  apiToken: {
    name: 'API_TOKEN',
    description: 'Bearer token for `/api/v1` and the dashboard. Unset: those answer 503 saying how to enable them.',
    secret: true,
    parse: (raw: string, name: string) => (raw.length >= 16 ? raw : fail(name, 'must be at least 16 characters')),
    fallback: undefined as string | undefined,
  },
  dashboardSessionSeconds: {
    name: 'DASHBOARD_SESSION_SECONDS',
    description: 'How long a dashboard sign-in lasts. Sessions also end when the service restarts or API_TOKEN changes.',
    defaultText: '28800',
    parse: integer(1, 30 * 86_400),
    fallback: 28_800,
  },
  logLevel: {
    name: 'LOG_LEVEL',
    description: `pino log level (${LOG_LEVELS.join(', ')}).`,
    defaultText: 'info',
    parse: oneOf(LOG_LEVELS),
    fallback: 'info' as LogLevel,
  },
  migrateOnStart: {
    name: 'MIGRATE_ON_START',
    description: '`start` runs `migrate` first.',
    defaultText: 'true',
    parse: boolean,
    fallback: true,
  },
  corsOrigins: {
    name: 'CORS_ORIGINS',
    description: 'Comma-separated origins allowed to call the API from a browser. Empty: CORS off.',
    defaultText: '(empty)',
    parse: list,
    fallback: [] as string[],
  },
  dbPoolMax: {
    name: 'DB_POOL_MAX',
    description: 'Connections in the service pool (pg-boss keeps a pool of the same size).',
    defaultText: '5',
    parse: integer(2, 100),
    fallback: 5,
  },
  dbStatementTimeoutMs: {
    name: 'DB_STATEMENT_TIMEOUT_MS',
    description: 'statement_timeout of service queries; must stay below SYNC_EXPIRE_SECONDS.',
    defaultText: '15000',
    parse: integer(100, 3_600_000),
    fallback: 15_000,
  },
  syncBatchSize: {
    name: 'SYNC_BATCH_SIZE',
    description: 'Jobs a sync worker claims at once (one document query, one bulk request).',
    defaultText: '500',
    parse: integer(1, 10_000),
    fallback: 500,
  },
  syncConcurrency: {
    name: 'SYNC_CONCURRENCY',
    description: 'Batches in flight per sync queue in this process.',
    defaultText: '2',
    parse: integer(1, 64),
    fallback: 2,
  },
  syncPollingIntervalSeconds: {
    name: 'SYNC_POLLING_INTERVAL_SECONDS',
    description: 'Backstop poll of an idle sync worker; new jobs wake workers at once through LISTEN/NOTIFY.',
    defaultText: '2',
    parse: integer(1, 300),
    fallback: 2,
  },
  syncRetryLimit: {
    name: 'SYNC_RETRY_LIMIT',
    description: 'Retries of a sync job before it moves to the dead-letter queue.',
    defaultText: '8',
    parse: integer(0, 100),
    fallback: 8,
  },
  syncRetryDelaySeconds: {
    name: 'SYNC_RETRY_DELAY_SECONDS',
    description: 'First retry delay; doubles each retry, with jitter.',
    defaultText: '2',
    parse: integer(1, 3600),
    fallback: 2,
  },
  syncRetryDelayMaxSeconds: {
    name: 'SYNC_RETRY_DELAY_MAX_SECONDS',
    description: 'Cap on a single retry delay.',
    defaultText: '300',
    parse: integer(1, 86_400),
    fallback: 300,
  },
  syncExpireSeconds: {
    name: 'SYNC_EXPIRE_SECONDS',
    description: 'A claimed batch not settled in this time is retried by another worker.',
    defaultText: '60',
    parse: integer(5, 86_400),
    fallback: 60,
  },
  superviseIntervalSeconds: {
    name: 'SUPERVISE_INTERVAL_SECONDS',
    description: "How often pg-boss's supervisor retries jobs whose worker died (expired) and runs maintenance.",
    defaultText: '30',
    parse: integer(1, 3600),
    fallback: 30,
  },
  maintenanceIntervalSeconds: {
    name: 'MAINTENANCE_INTERVAL_SECONDS',
    description: "How often pg-boss's maintenance deletes jobs past their retention (pg-boss `maintenanceIntervalSeconds`).",
    defaultText: '3600',
    parse: integer(60, 86_400),
    fallback: 3600,
  },
  completedRetentionSeconds: {
    name: 'COMPLETED_RETENTION_SECONDS',
    description: 'How long completed jobs stay in the job table (pg-boss `deleteAfterSeconds`).',
    defaultText: '86400',
    parse: integer(60, 365 * 86_400),
    fallback: 86_400,
  },
  failedRetentionSeconds: {
    name: 'FAILED_RETENTION_SECONDS',
    description: 'How long dead-lettered jobs are kept (the dead-letter queues\' `retentionSeconds` and `deleteAfterSeconds`).',
    defaultText: '1209600',
    parse: integer(60, 365 * 86_400),
    fallback: 14 * 86_400,
  },
  smtpUrl: {
    name: 'SMTP_URL',
    description: 'SMTP server for the `email` queue, e.g. `smtps://user:password@smtp.example.com:465` (`smtp://` upgrades with STARTTLS when offered). Unset: email jobs wait and the log and `/ready` say why.',
    secret: true,
    parse: url(['smtp:', 'smtps:']),
    fallback: undefined as string | undefined,
  },
  emailFrom: {
    name: 'EMAIL_FROM',
    description: 'From address of every email, e.g. `Shop <no-reply@example.com>`; required with SMTP_URL.',
    parse: text,
    fallback: undefined as string | undefined,
  },
  emailTemplatesDir: {
    name: 'EMAIL_TEMPLATES_DIR',
    description: 'Folder of email templates: `<name>.txt` (a `Subject:` line, a blank line, the text) and optionally `<name>.html`.',
    defaultText: 'templates/email (in the package)',
    parse: text,
    fallback: undefined as string | undefined,
  },
  exportDir: {
    name: 'EXPORT_DIR',
    description: 'Folder the `export` queue writes its CSV and NDJSON files to (created when missing). Unset: export jobs wait.',
    parse: text,
    fallback: undefined as string | undefined,
  },
  imageStorage: {
    name: 'IMAGE_STORAGE',
    description: 'Where the `image-cleanup` queue deletes images: `local` (IMAGE_STORAGE_DIR) or `supabase` (Supabase Storage). Unset: image-cleanup jobs wait.',
    parse: oneOf(['local', 'supabase'] as const),
    fallback: undefined as 'local' | 'supabase' | undefined,
  },
  imageStorageDir: {
    name: 'IMAGE_STORAGE_DIR',
    description: 'With IMAGE_STORAGE=local: the folder holding the images; an image URL maps to a file below it.',
    parse: text,
    fallback: undefined as string | undefined,
  },
  imageBaseUrl: {
    name: 'IMAGE_BASE_URL',
    description: 'With IMAGE_STORAGE=local: the URL prefix of the images in IMAGE_STORAGE_DIR (`https://cdn.example.com/images/` maps `.../images/a/b.jpg` to `a/b.jpg`). URLs outside it are left alone.',
    parse: url(['http:', 'https:', 'file:']),
    fallback: undefined as string | undefined,
  },
  supabaseUrl: {
    name: 'SUPABASE_URL',
    description: 'With IMAGE_STORAGE=supabase: the project URL; image URLs of its Storage (`/storage/v1/object/...`) are deleted.',
    parse: url(['http:', 'https:']),
    fallback: undefined as string | undefined,
  },
  supabaseServiceRoleKey: {
    name: 'SUPABASE_SERVICE_ROLE_KEY',
    description: 'With IMAGE_STORAGE=supabase: the service role key, which may delete Storage objects.',
    secret: true,
    parse: text,
    fallback: undefined as string | undefined,
  },
  imageStorageBucket: {
    name: 'IMAGE_STORAGE_BUCKET',
    description: 'With IMAGE_STORAGE=supabase: the only bucket image-cleanup deletes from; URLs of other buckets are left alone.',
    defaultText: 'images',
    parse: (raw: string, name: string) => (/^[a-z0-9][a-z0-9._-]{0,62}$/.test(raw) ? raw : fail(name, 'is not a bucket name (a-z, 0-9, ., _ and -)')),
    fallback: 'images',
  },
  externalApiUrl: {
    name: 'EXTERNAL_API_URL',
    description: 'Base URL of the partner API the `external-api` queue calls; a job names only a path below it. Unset: external-api jobs wait.',
    parse: url(['http:', 'https:']),
    fallback: undefined as string | undefined,
  },
  externalApiToken: {
    name: 'EXTERNAL_API_TOKEN',
    description: 'Bearer token sent to EXTERNAL_API_URL.',
    secret: true,
    parse: text,
    fallback: undefined as string | undefined,
  },
  externalApiTimeoutMs: {
    name: 'EXTERNAL_API_TIMEOUT_MS',
    description: 'Timeout of one external-api call; a timed-out call is retried.',
    defaultText: '10000',
    parse: integer(100, 600_000),
    fallback: 10_000,
  },
  reconcileCron: {
    name: 'RECONCILE_CRON',
    description: 'When the service runs `reconcile --repair` on its own (cron, UTC; default 03:00 nightly). `off` removes the schedule.',
    defaultText: '0 3 * * *',
    parse: cronOrOff,
    fallback: '0 3 * * *' as string | null,
  },
  queueOverrides: {
    name: 'QUEUE_OVERRIDES',
    description: 'JSON object of per-queue settings, e.g. `{"search-sync.listings":{"batchSize":200,"concurrency":4}}`. Every queue takes batchSize, concurrency and pollingIntervalSeconds; the other queues (not search-sync) also retryLimit, retryDelaySeconds, retryDelayMaxSeconds, expireInSeconds and rateLimit (`{"limit":300,"periodSeconds":300}`, or null for none).',
    defaultText: '{}',
    parse: json,
    fallback: {} as unknown,
  },
} satisfies Record<string, Variable<unknown>>;

type Variables = typeof variables;
export type Env = { [K in keyof Variables]: Variables[K]['fallback'] };

/** The documented variables, in order, for the README table and its test. */
export function describeVariables(): { name: string; defaultText: string; description: string }[] {
  return Object.values(variables).map((v: Variable<unknown>) => ({
    name: v.name,
    defaultText: v.defaultText ?? '(unset)',
    description: v.description,
  }));
}

export function secretVariableNames(): string[] {
  return Object.values(variables)
    .filter((v: Variable<unknown>) => v.secret)
    .map((v) => v.name);
}

/**
 * Reads every variable and reports all problems at once, each naming its variable, so an
 * operator fixes the environment in one pass instead of one restart per mistake.
 */
export function readEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const problems: string[] = [];
  const env: Record<string, unknown> = {};
  for (const [key, variable] of Object.entries(variables) as [string, Variable<unknown>][]) {
    const raw = source[variable.name];
    if (raw === undefined || raw === '') {
      env[key] = variable.fallback;
      continue;
    }
    try {
      env[key] = variable.parse(raw, variable.name);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  const parsed = env as Env;
  if (problems.length === 0) problems.push(...crossChecks(parsed));
  if (problems.length > 0) throw new ConfigError(problems);
  return parsed;
}

function crossChecks(env: Env): string[] {
  const problems: string[] = [];
  if (env.elasticsearchUsername && !env.elasticsearchPassword) {
    problems.push('ELASTICSEARCH_PASSWORD must be set when ELASTICSEARCH_USERNAME is');
  }
  if (env.elasticsearchPassword && !env.elasticsearchUsername) {
    problems.push('ELASTICSEARCH_USERNAME must be set when ELASTICSEARCH_PASSWORD is');
  }
  if (env.dbStatementTimeoutMs >= env.syncExpireSeconds * 1000) {
    problems.push('DB_STATEMENT_TIMEOUT_MS must be shorter than SYNC_EXPIRE_SECONDS, so a stuck query fails before its job expires');
  }
  if (env.elasticsearchRequestTimeoutMs >= env.syncExpireSeconds * 1000) {
    problems.push('ELASTICSEARCH_REQUEST_TIMEOUT_MS must be shorter than SYNC_EXPIRE_SECONDS, so a hung bulk fails before its job expires');
  }
  if (env.syncRetryDelayMaxSeconds < env.syncRetryDelaySeconds) {
    problems.push('SYNC_RETRY_DELAY_MAX_SECONDS must be at least SYNC_RETRY_DELAY_SECONDS');
  }
  if (env.smtpUrl && !env.emailFrom) problems.push('EMAIL_FROM must be set when SMTP_URL is (the From address of every email)');
  if (env.imageStorage === 'local' && (!env.imageStorageDir || !env.imageBaseUrl)) {
    problems.push('IMAGE_STORAGE=local needs IMAGE_STORAGE_DIR (the folder) and IMAGE_BASE_URL (the URL prefix of its images)');
  }
  if (env.imageStorage === 'supabase' && (!env.supabaseUrl || !env.supabaseServiceRoleKey)) {
    problems.push('IMAGE_STORAGE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY');
  }
  return problems;
}
