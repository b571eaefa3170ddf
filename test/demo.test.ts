import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { packageRoot } from '../src/config/paths.ts';
import { eventually } from './helpers/database.ts';

// `npm start` with no DATABASE_URL, as a newcomer runs it: a real embedded PostgreSQL (as root here,
// which initdb refuses, so it runs as the postgres system user), the sample schema, the service.

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Demo {
  output: () => string;
  dashboard: string;
  token: string;
  databaseUrl: string;
  pid: number;
  kill(signal: NodeJS.Signals): void;
  /** SIGINT to the whole process group, as Ctrl+C in a terminal sends it. */
  ctrlC(): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startDemo(t: Test, dataDir: string, postgresPort: number): Promise<Demo> {
  const env = {
    ...process.env,
    DATABASE_URL: '',
    ELASTICSEARCH_URL: '',
    API_TOKEN: '',
    DEMO_DATA_DIR: dataDir,
    DEMO_POSTGRES_PORT: String(postgresPort),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
  };
  // A process group of its own, as a terminal gives a command, so ctrlC() can signal all of it.
  const child = spawn(process.execPath, [join(packageRoot, 'src/cli/main.ts'), 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  });
  const banner = await eventually(async () => /Dashboard  (\S+)\n {2}API token {2}(\S+)\n {2}Database {3}(\S+)/.exec(out), { timeoutMs: 60_000, intervalMs: 100 }).catch(() => {
    throw new Error(`the demo printed no banner:\n${out}`);
  });
  return {
    output: () => out,
    dashboard: banner![1]!,
    token: banner![2]!,
    databaseUrl: banner![3]!,
    pid: child.pid!,
    kill: (signal) => child.kill(signal),
    ctrlC: () => process.kill(-child.pid!, 'SIGINT'),
    exited,
  };
}

async function query<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

async function postgresPid(dataDir: string): Promise<number | null> {
  const pid = Number((await readFile(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  if (!pid) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

const postgresRunning = async (dataDir: string) => (await postgresPid(dataDir)) !== null;

/** A data folder of the test's own, whose server never outlives the test, whatever fails. */
function demoDataDir(t: Test): string {
  const dataDir = join(t.testdir(), 'data');
  t.teardown(async () => {
    const pid = await postgresPid(dataDir);
    if (pid !== null) process.kill(pid, 'SIGINT');
  });
  return dataDir;
}

t.test('npm start without DATABASE_URL runs the demo on an embedded Postgres: a new listing gets its job', async (t) => {
  const dataDir = demoDataDir(t);
  const demo = await startDemo(t, dataDir, await freePort());

  t.match(demo.dashboard, /^http:\/\/127\.0\.0\.1:\d+\/dashboard$/);
  t.match(demo.token, /^[0-9a-f]{40}$/, 'a generated API token is printed');
  t.match(demo.output(), 'Search sync waits until ELASTICSEARCH_URL is set');
  const health = await fetch(new URL('/health', demo.dashboard));
  t.equal(health.status, 200);

  const [sample] = await query<{ n: number }>(demo.databaseUrl, 'SELECT count(*)::int AS n FROM listings');
  t.equal(sample!.n, 3, 'the sample rows of supabase/seed.sql are there');
  const [listing] = await query<{ id: string }>(
    demo.databaseUrl,
    `INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), 'demo listing', 1200) RETURNING id`,
  );
  const jobs = await query(demo.databaseUrl, `SELECT state, data FROM pgboss.job WHERE name = 'search-sync.listings' AND singleton_key = $1`, [listing!.id]);
  t.same(jobs, [{ state: 'created', data: { table: 'listings', id: listing!.id } }], 'the write is a waiting search-sync job');

  demo.kill('SIGTERM');
  t.same(await demo.exited, { code: 0, signal: null }, 'SIGTERM drains and exits 0');
  t.equal(await postgresRunning(dataDir), false, 'the embedded Postgres stopped with it');
  const secrets = JSON.parse(await readFile(join(dataDir, 'demo-secrets.json'), 'utf8')) as { apiToken: string };
  t.equal(secrets.apiToken, demo.token, 'the token is kept in the data folder');
});

t.test('after a crash, the next demo takes over the server left running and keeps the data and token', async (t) => {
  const dataDir = demoDataDir(t);
  const port = await freePort();
  const first = await startDemo(t, dataDir, port);
  await query(first.databaseUrl, `INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), 'survives', 1)`);
  first.kill('SIGKILL');
  await first.exited;
  t.equal(await postgresRunning(dataDir), true, 'a killed demo cannot stop its server');

  const second = await startDemo(t, dataDir, port);
  t.equal(second.token, first.token);
  const rows = await query<{ title: string }>(second.databaseUrl, `SELECT title FROM listings WHERE title = 'survives'`);
  t.same(rows, [{ title: 'survives' }]);
  second.ctrlC();
  t.same(await second.exited, { code: 0, signal: null }, 'Ctrl+C drains and exits 0');
  t.notMatch(second.output(), 'terminating connection', 'the database outlives the drain: Ctrl+C reaches the service, not the server');
  t.equal(await postgresRunning(dataDir), false);
});
