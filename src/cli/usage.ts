import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import type { Env } from '../config/env.ts';

/** An error whose message is the whole story for the operator: printed without a stack. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function requireDatabaseUrl(env: Env, command: string): string {
  if (!env.databaseUrl) throw new UsageError(`DATABASE_URL must be set for ${command} (only start can run without it, on an embedded demo database)`);
  return env.databaseUrl;
}

/** `<command> --help`: the usage goes to stdout and the command exits 0 without doing anything. */
export class HelpRequested extends Error {
  override name = 'HelpRequested';
}

/** Parses a command's options strictly; a mistake names itself and shows the command's usage. */
export function parseOptions<T extends ParseArgsOptionsConfig>(args: string[], options: T, usage: string) {
  if (args.includes('--help') || args.includes('-h')) throw new HelpRequested(`usage: ${usage}`);
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\nusage: ${usage}`);
  }
}

/** A whole number option within bounds, or the fallback when it is absent. */
export function integerOption(value: string | undefined, name: string, fallback: number, [min, max]: [number, number]): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || parsed < min || parsed > max) throw new UsageError(`--${name} must be a whole number between ${min} and ${max}, got "${value}"`);
  return parsed;
}
