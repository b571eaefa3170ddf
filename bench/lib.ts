import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { readEnv } from '../src/config/env.ts';
import { createLogger } from '../src/config/logger.ts';
import { packageRoot, seedFile } from '../src/config/paths.ts';
import { migrate } from '../src/db/migrate.ts';
import { adminUrl, databaseUrl, withAdmin } from '../test/helpers/database.ts';

export interface BenchDatabase {
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/**
 * A fresh database with the sample schema; `withQueue` also runs the service's migrate. `server`
 * is the admin URL of the server to create it on (the shared one by default).
 */
export async function benchDatabase(
  label: string,
  { withQueue = false, extraSql = [] as string[], env = {} as Record<string, string>, server = adminUrl } = {},
): Promise<BenchDatabase> {
  const name = `qs_bench_${label.replace(/\W/g, '_')}_${randomBytes(3).toString('hex')}`;
  await withAdmin((c) => c.query(`CREATE DATABASE ${name}`), server);
  const url = databaseUrl(name, server);
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  pool.on('error', () => {});
  await pool.query(await readFile(seedFile, 'utf8'));
  if (withQueue) await migrate(url, readEnv({ DATABASE_URL: url, LOG_LEVEL: 'silent', ...env }), createLogger('silent'));
  for (const sql of extraSql) await pool.query(sql);
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`), server);
    },
  };
}

export const legacySql = () => readFile(join(packageRoot, 'test/fixtures/legacy.sql'), 'utf8');

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, value };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

export function table(rows: Record<string, string | number>[]): string {
  const first = rows[0];
  if (!first) return '';
  const cols = Object.keys(first);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(width[i]!)).join(' | ') + ' |';
  return [line(cols), line(width.map((w) => '-'.repeat(w))), ...rows.map((r) => line(cols.map((c) => String(r[c]))))].join('\n');
}

export const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** The V8 flags the service runs with in the container and under `npm start` (see the Dockerfile). */
export const serviceNodeFlags = ['--max-semi-space-size=8', '--max-old-space-size=160'];

/** What benches spawn the service with: the same flags, unless SERVICE_NODE_FLAGS tries others. */
export const benchNodeFlags = process.env.SERVICE_NODE_FLAGS?.split(' ').filter(Boolean) ?? serviceNodeFlags;

/**
 * The service as its own process, exactly as `queue-service start` runs it, with benchNodeFlags;
 * `env` adds to (and overrides) the bench's defaults: no migrate, any port, warnings only.
 */
export function spawnService(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...benchNodeFlags, join(packageRoot, 'src/cli/main.ts'), 'start'], {
    env: { ...process.env, MIGRATE_ON_START: 'false', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** A process's resident memory in MB; 0 once it has exited. */
export function rssMb(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}
