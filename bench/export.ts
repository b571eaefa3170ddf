// Memory of the export queue's streaming for 1,000,000 rows, against baselines measured in the
// same run: the same export of 200,000 and of 10,000 rows (constant memory means the same peak
// once V8's heap has reached its working size), and a naive export that reads every row with one
// query before writing (what streaming avoids). Each export runs in a child process of its own,
// with the service's own V8 flags (package.json `start`, the Dockerfile), so each peak RSS is that
// export's alone. The naive baseline runs without the service's heap cap: under it, it would die
// out of memory before its peak could be read.
//
//   npm run bench:export                 1,000,000 listings, CSV and NDJSON
//   BENCH_EXPORT_ROWS=200000 npm run bench:export
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/config/logger.ts';
import type { ExportFormat } from '../src/config/task-queues.ts';
import { createPool } from '../src/db/pool.ts';
import { csvLine, exportRows } from '../src/jobs/export-rows.ts';
import { benchDatabase, benchNodeFlags, table } from './lib.ts';

interface Measurement {
  mode: 'streaming' | 'naive';
  format: ExportFormat;
  limit: number;
  rows: number;
  ms: number;
  peakRssMb: number;
  peakHeapMb: number;
  fileMb: number;
}

/** Child: one export, sampling RSS and heap every 20 ms; prints a Measurement as JSON. */
async function child(url: string, mode: Measurement['mode'], format: ExportFormat, limit: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'qs-export-bench-'));
  const pool = createPool(url, { max: 2, statementTimeoutMs: 600_000, applicationName: 'bench export' }, createLogger('silent'));
  let peakRss = 0;
  let peakHeap = 0;
  const sample = () => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  };
  const timer = setInterval(sample, 20);
  const started = performance.now();
  let rows: number;
  let bytes: number;
  if (mode === 'streaming') {
    const result = await exportRows(pool, dir, 'bench', { table: 'listings', format, limit });
    rows = result.rows;
    bytes = result.bytes;
  } else {
    // Everything in memory first, as a plain `pool.query` would have it.
    const { rows: all } = await pool.query<Record<string, string | null>>(
      format === 'csv'
        ? 'SELECT id::text, seller_id::text, title, description, price_cents::text, currency, status, tags::text, attributes::text, created_at::text, updated_at::text FROM listings ORDER BY id LIMIT $1'
        : 'SELECT to_jsonb(l)::text AS line FROM (SELECT * FROM listings ORDER BY id LIMIT $1) l',
      [limit],
    );
    sample();
    const file = createWriteStream(join(dir, 'naive'));
    for (const r of all) if (!file.write(format === 'csv' ? csvLine(Object.values(r)) : `${r.line}\n`)) await once(file, 'drain');
    file.end();
    await once(file, 'close');
    rows = all.length;
    bytes = file.bytesWritten;
  }
  const ms = performance.now() - started;
  clearInterval(timer);
  sample();
  await pool.end();
  await rm(dir, { recursive: true, force: true });
  const mb = (n: number) => Math.round((n / 1_048_576) * 10) / 10;
  const m: Measurement = { mode, format, limit, rows, ms: Math.round(ms), peakRssMb: mb(peakRss), peakHeapMb: mb(peakHeap), fileMb: mb(bytes) };
  process.stdout.write(JSON.stringify(m));
}

const uncapped = benchNodeFlags.filter((flag) => !flag.startsWith('--max-old-space-size'));

function measure(url: string, mode: Measurement['mode'], format: ExportFormat, limit: number): Measurement {
  const flags = mode === 'naive' ? uncapped : benchNodeFlags;
  const run = spawnSync(process.execPath, [...flags, fileURLToPath(import.meta.url), '--child', url, mode, format, String(limit)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (run.status !== 0) throw new Error(`${mode} ${format} ${limit}: ${run.stderr}`);
  return JSON.parse(run.stdout) as Measurement;
}

async function main(): Promise<void> {
  const total = Number(process.env.BENCH_EXPORT_ROWS ?? 1_000_000);
  const middle = Math.min(total, 200_000);
  const db = await benchDatabase('export', { withQueue: true });
  try {
    process.stdout.write(`inserting ${total.toLocaleString('en')} listings (triggers off: this measures the export, not the sync)\n`);
    const client = await db.pool.connect();
    await client.query('SET session_replication_role = replica');
    await client.query(
      `INSERT INTO listings (seller_id, title, description, price_cents, status, tags, attributes)
       SELECT gen_random_uuid(), 'Listing ' || i, CASE WHEN i % 7 = 0 THEN 'has "quotes", commas' ELSE 'a plain description of item ' || i END,
              i % 100000, CASE WHEN i % 3 = 0 THEN 'sold' ELSE 'active' END, ARRAY['tag' || (i % 10), 'x'], jsonb_build_object('n', i)
       FROM generate_series(1, $1::int) i`,
      [total],
    );
    client.release();
    await db.pool.query('ANALYZE listings');

    const runs: Measurement[] = [
      measure(db.url, 'streaming', 'csv', 10_000),
      measure(db.url, 'streaming', 'csv', middle),
      measure(db.url, 'streaming', 'csv', total),
      measure(db.url, 'naive', 'csv', total),
      measure(db.url, 'streaming', 'ndjson', 10_000),
      measure(db.url, 'streaming', 'ndjson', total),
    ];
    process.stdout.write(`\n${table(runs.map((r) => ({ ...r, 'rows/s': Math.round(r.rows / (r.ms / 1000)) })))}\n\n`);
    const find = (mode: string, format: string, limit: number) => runs.find((r) => r.mode === mode && r.format === format && r.limit === limit)!;
    const csvSmall = find('streaming', 'csv', 10_000);
    const csvMiddle = find('streaming', 'csv', middle);
    const csvBig = find('streaming', 'csv', total);
    const ndSmall = find('streaming', 'ndjson', 10_000);
    const ndBig = find('streaming', 'ndjson', total);
    const naive = find('naive', 'csv', total);
    const ratio = (a: number, b: number) => (a / b).toFixed(2);
    const n = (x: number) => x.toLocaleString('en');
    process.stdout.write(
      [
        `CSV:    peak RSS ${n(total)} rows / ${n(middle)} rows = ${ratio(csvBig.peakRssMb, csvMiddle.peakRssMb)} (${csvBig.peakRssMb} MB vs ${csvMiddle.peakRssMb} MB) for ${ratio(csvBig.rows, csvMiddle.rows)}x the rows`,
        `CSV:    peak RSS ${n(total)} rows / 10,000 rows = ${ratio(csvBig.peakRssMb, csvSmall.peakRssMb)} (${csvBig.peakRssMb} MB vs ${csvSmall.peakRssMb} MB) for ${ratio(csvBig.rows, csvSmall.rows)}x the rows`,
        `NDJSON: peak RSS ${n(total)} rows / 10,000 rows = ${ratio(ndBig.peakRssMb, ndSmall.peakRssMb)} (${ndBig.peakRssMb} MB vs ${ndSmall.peakRssMb} MB)`,
        `naive (read all, then write) / streaming, peak RSS at ${n(total)} rows = ${ratio(naive.peakRssMb, csvBig.peakRssMb)} (${naive.peakRssMb} MB vs ${csvBig.peakRssMb} MB)`,
      ].join('\n') + '\n',
    );
  } finally {
    await db.drop();
  }
}

if (process.argv[2] === '--child') {
  const [, , , url, mode, format, limit] = process.argv;
  await child(url!, mode as Measurement['mode'], format as ExportFormat, Number(limit));
} else {
  await main();
}
