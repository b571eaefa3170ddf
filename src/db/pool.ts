import pg from 'pg';
import type { Logger } from '../config/logger.ts';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface PoolOptions {
  max: number;
  statementTimeoutMs: number;
  applicationName: string;
}

// bigint columns (document versions, counts) come back as strings by default; every bigint this
// service reads fits a double.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export function createPool(connectionString: string, options: PoolOptions, log: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    statement_timeout: options.statementTimeoutMs,
    application_name: options.applicationName,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection (a database restart) must not crash the process; the
  // pool replaces it on the next checkout.
  pool.on('error', (err) => log.warn({ err: err.message }, 'database connection lost; it will be replaced'));
  return pool;
}
