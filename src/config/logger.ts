import { pino, type Logger } from 'pino';
import type { LogLevel } from './env.ts';

export type { Logger };

// Anything that could carry a credential is censored wherever it appears in a log line.
const REDACT = [
  'password',
  '*.password',
  'apiKey',
  '*.apiKey',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'connectionString',
  '*.connectionString',
];

export function createLogger(level: LogLevel = 'info', name = 'queue-service'): Logger {
  return pino({ name, level, redact: { paths: REDACT, censor: '[redacted]' } });
}

/** Removes the password from a connection string so it can be logged. */
export function describeDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}
