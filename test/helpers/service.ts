import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Test } from 'tap';
import { readEnv } from '../../src/config/env.ts';
import { createLogger } from '../../src/config/logger.ts';
import { packageRoot } from '../../src/config/paths.ts';
import { runService, type RunningService, type ServiceOptions } from '../../src/cli/start.ts';
import type { TestDatabase } from './database.ts';

/**
 * Settings that make a test's worker react in seconds rather than minutes. The service migrates
 * on start, as it does by default, so the queues take these retry settings too.
 */
export const FAST_SYNC_ENV = {
  SYNC_RETRY_DELAY_SECONDS: '1',
  SYNC_RETRY_DELAY_MAX_SECONDS: '2',
  SYNC_POLLING_INTERVAL_SECONDS: '1',
  SUPERVISE_INTERVAL_SECONDS: '1',
  PORT: '0',
  HOST: '127.0.0.1',
  LOG_LEVEL: 'silent',
};

export function serviceEnv(db: TestDatabase, searchUrl: string | null, extra: Record<string, string> = {}): Record<string, string> {
  return { ...FAST_SYNC_ENV, DATABASE_URL: db.url, ELASTICSEARCH_URL: searchUrl ?? '', ...extra };
}

/** The real service in this process, stopped when the test ends. */
export async function startService(t: Test, db: TestDatabase, searchUrl: string | null, extra: Record<string, string> = {}, options: ServiceOptions = {}): Promise<RunningService> {
  const vars = serviceEnv(db, searchUrl, extra);
  const env = readEnv(vars);
  const service = await runService(env, db.url, createLogger(env.logLevel), options);
  t.teardown(() => service.stop());
  return service;
}

export interface ChildService {
  child: ChildProcess;
  url: Promise<string>;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The service as its own process (`queue-service start`), for crashes and signals. */
export function spawnService(t: Test, db: TestDatabase, searchUrl: string | null, extra: Record<string, string> = {}): ChildService {
  const env = { ...process.env, ...serviceEnv(db, searchUrl, { LOG_LEVEL: 'info', ...extra }) };
  const child = spawn(process.execPath, [join(packageRoot, 'src/cli/main.ts'), 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let resolveUrl: (url: string) => void;
  const url = new Promise<string>((resolve) => (resolveUrl = resolve));
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    const match = /"url":"(http:[^"]+)".*"msg":"http listening"/.exec(out);
    if (match) resolveUrl(match[1]!);
  });
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, url, output: () => out, exited };
}
