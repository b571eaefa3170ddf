import pg from 'pg';
import { readStats, type QueueStatsRow } from '../db/jobs.ts';

/** Seconds as an operator reads them: 850 ms, 4.2 s, 3 min 20 s, 2 h 5 min, 3 d 4 h. */
export function formatSeconds(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${Math.round(seconds * 10) / 10} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86_400)} d ${Math.round((seconds % 86_400) / 3600)} h`;
}

const count = (n: number) => n.toLocaleString('en-US');
const pair = (a: number | null, b: number | null) => (a === null ? '-' : `${formatSeconds(a)} / ${formatSeconds(b)}`);

const COLUMNS: [header: string, cell: (row: QueueStatsRow) => string, alignRight: boolean][] = [
  ['queue', (r) => r.queue, false],
  ['queued', (r) => count(r.queued), true],
  ['deferred', (r) => count(r.deferred), true],
  ['retrying', (r) => count(r.retrying), true],
  ['active', (r) => count(r.active), true],
  ['failed', (r) => count(r.failed), true],
  ['dead letters', (r) => (r.kind === 'queue' ? count(r.dead_lettered) : '-'), true],
  ['done 1h', (r) => count(r.completed_last_hour), true],
  ['failed 1h', (r) => count(r.failed_last_hour), true],
  ['jobs/min', (r) => String(r.jobs_per_minute), true],
  ['oldest waiting', (r) => formatSeconds(r.oldest_waiting_seconds), true],
  ['wait p50 / p95', (r) => pair(r.wait_p50_seconds, r.wait_p95_seconds), true],
  ['run p50 / p95', (r) => pair(r.run_p50_seconds, r.run_p95_seconds), true],
];

/** queue.stats as a plain-text table, one line per queue (dead-letter queues last). */
export function formatStatsTable(rows: QueueStatsRow[]): string {
  const ordered = [...rows].sort((a, b) => (a.kind === b.kind ? a.queue.localeCompare(b.queue) : a.kind === 'queue' ? -1 : 1));
  const cells = ordered.map((row) => COLUMNS.map(([, cell]) => cell(row)));
  const widths = COLUMNS.map(([header], i) => Math.max(header.length, ...cells.map((c) => c[i]!.length)));
  const line = (values: string[]) =>
    values.map((v, i) => (COLUMNS[i]![2] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(COLUMNS.map(([header]) => header)), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n') + '\n';
}

export async function printStats(databaseUrl: string, args: string[], out: NodeJS.WritableStream): Promise<number> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: 'queue-service stats' });
  try {
    const rows = await readStats(pool);
    out.write(args.includes('--json') ? `${JSON.stringify(rows, null, 2)}\n` : formatStatsTable(rows));
    return 0;
  } finally {
    await pool.end();
  }
}
