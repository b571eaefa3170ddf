#!/usr/bin/env node
import { ConfigError, readEnv, type Env } from '../config/env.ts';
import { createLogger, type Logger } from '../config/logger.ts';
import { MigrateError, migrate } from '../db/migrate.ts';
import { EmbeddedPostgresError } from '../db/embedded-postgres.ts';
import { ToolError } from '../tools/errors.ts';
import { runDemo } from './demo.ts';
import { migrateLegacyCommand } from './migrate-legacy.ts';
import { reconcileCommand } from './reconcile.ts';
import { reindexCommand } from './reindex.ts';
import { exitOnSignals, runService } from './start.ts';
import { HelpRequested, requireDatabaseUrl, UsageError } from './usage.ts';
import { printStats } from './stats.ts';

interface Command {
  summary: string;
  /** Exit code for a failure (reconcile reserves 1 for "drift found"). */
  errorExitCode?: number;
  run(args: string[], env: Env, log: Logger): Promise<number>;
}

const commands: Record<string, Command> = {
  start: {
    summary: 'migrate (unless MIGRATE_ON_START=false), serve HTTP and run the sync workers until SIGTERM; without DATABASE_URL, on an embedded demo database',
    async run(_args, env, log) {
      if (!env.databaseUrl) return runDemo(env, log);
      const service = await runService(env, env.databaseUrl, log);
      return exitOnSignals(service, log);
    },
  },
  migrate: {
    summary: 'install the pg-boss schema, create the queues, apply migrations/ and attach the triggers',
    async run(_args, env, log) {
      await migrate(requireDatabaseUrl(env, 'migrate'), env, log);
      return 0;
    },
  },
  reindex: {
    summary: 'enqueue every row again [--table T]; --rebuild fills a new index and swaps the alias without downtime',
    run: reindexCommand,
  },
  reconcile: {
    summary: 'compare rows with index documents [--table T]; exit 1 on drift; --repair enqueues the fixes',
    errorExitCode: 2,
    run: reconcileCommand,
  },
  'migrate-legacy': {
    summary: 'move elasticsearch_sync_queue rows into the queues and drop the legacy triggers [--dry-run] [--rollback]',
    run: migrateLegacyCommand,
  },
  stats: {
    summary: 'print queue.stats as a table (--json for the rows as JSON)',
    async run(args, env) {
      const unknown = args.filter((a) => a !== '--json');
      if (unknown.length > 0) throw new UsageError(`unknown option ${unknown.join(' ')} (stats takes only --json)`);
      return printStats(requireDatabaseUrl(env, 'stats'), args, process.stdout);
    },
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(16)} ${c.summary}`);
  return `usage: queue-service <command> [options]\n\ncommands:\n${lines.join('\n')}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`queue-service: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    const env = readEnv();
    const log = createLogger(env.logLevel);
    return await command.run(rest, env, log);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${err.message}\n`);
      return 0;
    }
    const expected = [ConfigError, MigrateError, UsageError, ToolError, EmbeddedPostgresError];
    if (expected.some((kind) => err instanceof kind)) {
      process.stderr.write(`queue-service ${name}: ${(err as Error).message}\n`);
    } else {
      process.stderr.write(`queue-service ${name} failed: ${(err as Error).stack ?? String(err)}\n`);
    }
    return command.errorExitCode ?? 1;
  }
}


process.exitCode = await main(process.argv.slice(2));
