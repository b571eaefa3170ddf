import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A PostgreSQL server of a test's own, from the machine's own binaries, so a test can restart it
 * or exhaust its connections without touching the server the other tests share.
 */
export interface PrivatePostgres {
  url: string;
  port: number;
  restart(): void;
  stop(): void;
  start(): void;
}

function binDir(): string {
  const versions = ['17', '16', '15', '14'].map((v) => `/usr/lib/postgresql/${v}/bin`);
  const found = versions.find((d) => existsSync(join(d, 'pg_ctl')));
  if (!found) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql/*/bin');
  return found;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Whatever can run a clean-up when it ends: a tap test, or a bench's own list. */
export interface Teardown {
  teardown(fn: () => void): void;
}

/** `durable` keeps fsync and synchronous commit on, as a production server has them; tests turn them off for speed. */
export async function startPrivatePostgres(t: Teardown, { maxConnections = 50, durable = false } = {}): Promise<PrivatePostgres> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), 'qs-pg-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  const port = await freePort();
  // initdb and postgres refuse to run as root: run them as the postgres user when we are root.
  const asServer = (cmd: string, args: string[]) => {
    const full = [join(bin, cmd), ...args];
    const result = process.getuid?.() === 0 ? spawnSync('runuser', ['-u', 'postgres', '--', ...full], { encoding: 'utf8' }) : spawnSync(full[0]!, full.slice(1), { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${cmd} failed: ${result.stderr || result.stdout}`);
  };
  asServer('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=${maxConnections}${durable ? '' : ' -c fsync=off -c synchronous_commit=off'}`;
  const start = () => asServer('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-o', options, '-w', 'start']);
  const stop = () => asServer('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
  start();
  t.teardown(() => {
    try {
      asServer('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  execFileSync('psql', [url, '-qc', 'SELECT 1']);
  return { url, port, start, stop, restart: () => asServer('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-o', options, '-m', 'fast', '-w', 'restart']) };
}
