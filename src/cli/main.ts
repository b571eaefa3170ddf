#!/usr/bin/env node
import { ConfigError, readEnv, type Env } from '../config/env.ts';
import { createLogger, type Logger } from '../config/logger.ts';
import { MigrateError, migrate } from '../db/migrate.ts';
import { exitOnSignals, runService } from './start.ts';
import { printStats } from './stats.ts';

/** An error whose message is the whole story for the operator: printed without a stack. */
export class UsageError extends Error {
  override name = 'UsageError';
}

interface Command {
  summary: string;
  /** Exit code for a failure (reconcile reserves 1 for "drift found"). */
  errorExitCode?: number;
  run(args: string[], env: Env, log: Logger): Promise<number>;
}

function requireDatabaseUrl(env: Env, command: string): string {
  if (!env.databaseUrl) throw new UsageError(`DATABASE_URL must be set for ${command} (only start can run without it, on an embedded demo database)`);
  return env.databaseUrl;
}

const commands: Record<string, Command> = {
  start: {
    summary: 'migrate (unless MIGRATE_ON_START=false), serve HTTP and run the sync workers until SIGTERM',
    async run(_args, env, log) {
      const service = await runService(env, requireDatabaseUrl(env, 'start'), log);
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
    if (err instanceof ConfigError || err instanceof MigrateError || err instanceof UsageError) {
      process.stderr.write(`queue-service ${name}: ${err.message}\n`);
    } else {
      process.stderr.write(`queue-service ${name} failed: ${(err as Error).stack ?? String(err)}\n`);
    }
    return command.errorExitCode ?? 1;
  }
}


process.exitCode = await main(process.argv.slice(2));
