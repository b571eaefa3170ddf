// Streams the rows of a synced table that match a filter into a CSV or NDJSON file. Memory stays
// flat whatever the row count: rows come from a cursor a thousand at a time, and each chunk is
// written (waiting for the file to drain) before the next is fetched. The file appears under its
// final name only once complete, so a reader never sees half an export, and a retried job
// overwrites its own file rather than adding one. bench/export.ts measures memory for 1,000,000 rows.
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ExportCondition, ExportPayload } from '../config/task-queues.ts';
import { findSyncTable } from '../config/queues.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import { notRetryable } from './handler.ts';

export const EXPORT_FETCH_ROWS = 1000;

export interface ExportResult extends Record<string, unknown> {
  path: string;
  format: ExportPayload['format'];
  table: string;
  rows: number;
  bytes: number;
}

interface Column {
  name: string;
  type: string;
}

const OPERATORS: Record<ExportCondition['op'], string> = { eq: '=', ne: '<>', lt: '<', lte: '<=', gt: '>', gte: '>=', in: '= ANY', like: 'LIKE' };

const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** The columns of the table, in table order, with their SQL types. */
const columnsOf = `
  SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a
  WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
  ORDER BY a.attnum`;

export async function exportRows(pool: Pool, dir: string, jobId: string, payload: ExportPayload, signal?: AbortSignal): Promise<ExportResult> {
  const table = findSyncTable(payload.table);
  if (!table) throw notRetryable('unknown_table', `${payload.table} is not a synced table`);
  const qualified = `${ident(table.schema)}.${ident(table.table)}`;
  const { rows: all } = await pool.query<Column>(columnsOf, [qualified]);
  const byName = new Map(all.map((c) => [c.name, c]));
  const unknown = [...(payload.columns ?? []), ...(payload.filter ?? []).map((f) => f.column)].filter((c) => !byName.has(c));
  if (unknown.length > 0) {
    throw notRetryable('unknown_column', `${table.table} has no column ${[...new Set(unknown)].join(', ')} (columns: ${all.map((c) => c.name).join(', ')})`);
  }
  const columns = payload.columns ? payload.columns.map((c) => byName.get(c)!) : all;
  const { text, values } = selectStatement(qualified, table.key, columns, payload, byName);

  const folder = resolve(dir);
  await mkdir(folder, { recursive: true });
  const extension = payload.format === 'csv' ? 'csv' : 'ndjson';
  const path = join(folder, `${table.table}-${jobId}.${extension}`);
  const partial = `${path}.partial`;
  const client = await pool.connect();
  let rows = 0;
  try {
    // One snapshot for the whole export, and a cursor the server keeps, so nothing is held here.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await declareCursor(client, text, values);
    const file = createWriteStream(partial);
    const closed = once(file, 'close');
    try {
      if (payload.format === 'csv') await write(file, csvLine(columns.map((c) => c.name)));
      for (;;) {
        if (signal?.aborted) throw new Error('the export was stopped: its job expired');
        const { rows: chunk } = await client.query<Record<string, string | null>>(`FETCH FORWARD ${EXPORT_FETCH_ROWS} FROM export_rows`);
        if (chunk.length === 0) break;
        await write(file, payload.format === 'csv' ? chunk.map((r) => csvLine(columns.map((c) => r[c.name] ?? null))).join('') : chunk.map((r) => `${r.line}\n`).join(''));
        rows += chunk.length;
      }
    } finally {
      file.end();
      await closed;
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    await rm(partial, { force: true });
    throw describeQueryError(err);
  } finally {
    client.release();
  }
  await rename(partial, path);
  return { path, format: payload.format, table: table.table, rows, bytes: (await stat(path)).size };
}

async function declareCursor(client: PoolClient, text: string, values: unknown[]): Promise<void> {
  await client.query(`DECLARE export_rows NO SCROLL CURSOR FOR ${text}`, values);
}

/**
 * The SELECT, with every value a parameter cast to its column's type. Identifiers come from the
 * table's catalog, never from the payload as given. CSV gets each column as Postgres's text form
 * (as COPY writes it); NDJSON one JSON object per row, built by Postgres.
 */
function selectStatement(qualified: string, key: string, columns: Column[], payload: ExportPayload, byName: Map<string, Column>): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const where = (payload.filter ?? []).map((f) => condition(f, byName.get(f.column)!, values));
  const list = columns.map((c) => ident(c.name)).join(', ');
  let select = `SELECT ${list} FROM ${qualified} t${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${ident(key)}`;
  if (payload.limit !== undefined) {
    values.push(payload.limit);
    select += ` LIMIT $${values.length}`;
  }
  const text = payload.format === 'csv'
    ? `SELECT ${columns.map((c) => `${ident(c.name)}::text AS ${ident(c.name)}`).join(', ')} FROM (${select}) r`
    : `SELECT to_jsonb(r)::text AS line FROM (${select}) r`;
  return { text, values };
}

function condition(f: ExportCondition, column: Column, values: unknown[]): string {
  const name = ident(column.name);
  if (f.value === null) {
    if (f.op === 'eq') return `${name} IS NULL`;
    if (f.op === 'ne') return `${name} IS NOT NULL`;
    throw notRetryable('invalid_filter', `filter on ${column.name}: only eq and ne take null`);
  }
  if (f.op === 'in') {
    if (!Array.isArray(f.value)) throw notRetryable('invalid_filter', `filter on ${column.name}: in takes an array`);
    values.push(f.value.map(String));
    return `${name} = ANY ($${values.length}::${column.type}[])`;
  }
  if (Array.isArray(f.value)) throw notRetryable('invalid_filter', `filter on ${column.name}: ${f.op} takes one value, not an array`);
  values.push(String(f.value));
  if (f.op === 'like') return `${name}::text LIKE $${values.length}`;
  return `${name} ${OPERATORS[f.op]} $${values.length}::${column.type}`;
}

/** A value the column's type refuses ("abc" for an integer) cannot succeed on retry. */
function describeQueryError(err: unknown): unknown {
  const code = (err as { code?: string }).code;
  if (code === '22P02' || code === '22007' || code === '22008' || code === '22003' || code === '42883') {
    return notRetryable('invalid_filter', `a filter value does not fit its column: ${(err as Error).message}`);
  }
  return err;
}

async function write(file: NodeJS.WritableStream, chunk: string): Promise<void> {
  if (!file.write(chunk)) await once(file, 'drain');
}

/** RFC 4180: a field with a comma, quote or line break is quoted; null is an empty field, "" is quoted. */
export function csvLine(fields: (string | null)[]): string {
  return fields.map((v) => (v === null ? '' : v === '' || /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v)).join(',') + '\r\n';
}
