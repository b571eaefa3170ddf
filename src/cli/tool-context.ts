import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import { createPool, type Pool } from '../db/pool.ts';
import { searchClientFromEnv, type SearchClient } from '../search/client.ts';
import { createProgress, type Progress } from '../tools/progress.ts';
import { requireDatabaseUrl, UsageError } from './usage.ts';

/** What an operator tool runs with: a small pool, the search client, progress and a stop signal. */
export interface ToolContext {
  pool: Pool;
  log: Logger;
  progress: Progress;
  /** Aborted by the first Ctrl-C or SIGTERM; a second one exits at once. */
  signal: AbortSignal;
}

export function searchClientFor(env: Env, command: string): SearchClient {
  const search = searchClientFromEnv(env);
  if (!search) throw new UsageError(`ELASTICSEARCH_URL must be set for ${command}`);
  return search;
}

/**
 * Runs a tool with its pool. An interruptible tool stops at its next batch on the first Ctrl-C or
 * SIGTERM; any other keeps Node's default (exit at once), which for a tool working in a single
 * transaction means the transaction rolls back and nothing changes.
 */
export async function withToolContext<T>(
  command: string,
  env: Env,
  log: Logger,
  options: { interruptible: boolean },
  fn: (context: ToolContext) => Promise<T>,
): Promise<T> {
  const pool = createPool(requireDatabaseUrl(env, command), { max: 3, statementTimeoutMs: env.dbStatementTimeoutMs, applicationName: `queue-service ${command}` }, log);
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143);
    log.warn({ signal }, `${command}: stopping after the batch in flight (again to exit at once)`);
    controller.abort();
  };
  if (options.interruptible) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  try {
    return await fn({ pool, log, progress: createProgress({ stream: process.stderr, log }), signal: controller.signal });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pool.end();
  }
}

/** Lines of columns padded to line up, for the reports the tools print. */
export function columns(rows: (string | number)[][], indent = '  '): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, String(cell).length)));
  return rows
    .map((row) => indent + row.map((cell, i) => (typeof cell === 'number' ? String(cell).padStart(widths[i]!) : String(cell).padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}
