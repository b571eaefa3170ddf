// A 1,000,000-job backlog drained against the fast fake Elasticsearch, in one run: total time,
// rows/s per tenth of the drain, peak worker RSS, queue.stats response time during the drain,
// database size before, at the peak and after retention, and the app's write throughput while
// the backlog drains against the same writes with the queue idle. Runs on a server with
// autovacuum on, as production servers are (its own, when the shared one has it off).
//
//   npm run bench:backlog          (ROWS=1000000)
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import * as plans from '../src/db/plans.ts';
import { adminUrl, withAdmin } from '../test/helpers/database.ts';
import { FakeElasticsearch } from '../test/helpers/fake-elasticsearch.ts';
import { startPrivatePostgres } from '../test/helpers/private-postgres.ts';
import { benchDatabase, fmt, percentile, rssMb, spawnService, table } from './lib.ts';

const ROWS = Number(process.env.ROWS ?? 1_000_000);
const WRITE_SECONDS = 10;
const WRITERS = 10;

const sizeMb = async (pool: pg.Pool) => Number((await pool.query(`SELECT pg_database_size(current_database()) AS b`)).rows[0].b) / 1024 / 1024;

/** Single-row inserts from WRITERS clients for WRITE_SECONDS: the app's write throughput. */
async function appWrites(pool: pg.Pool): Promise<number> {
  const deadline = Date.now() + WRITE_SECONDS * 1000;
  let written = 0;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      const client = await pool.connect();
      try {
        while (Date.now() < deadline) {
          await client.query({ name: 'app-write', text: `INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), 'app write', 1)` });
          written++;
        }
      } finally {
        client.release();
      }
    }),
  );
  return written / WRITE_SECONDS;
}

async function statsQueryMs(pool: pg.Pool): Promise<number> {
  const exists = (await pool.query(`SELECT to_regclass('queue.stats') IS NOT NULL AS ok`)).rows[0].ok as boolean;
  const started = performance.now();
  await pool.query(exists ? 'SELECT * FROM queue.stats' : 'SELECT * FROM pgboss.queue');
  return performance.now() - started;
}

/**
 * The admin URL of a server with autovacuum on. A million jobs going through created, active and
 * completed leave millions of dead row versions in pg-boss's job table, and every production
 * server (Supabase's included) vacuums them away as they come; CI's shared server has autovacuum
 * off, so the bench then runs on a durable server of its own with the defaults.
 */
async function serverWithAutovacuum(cleanups: (() => void)[]): Promise<string> {
  const { rows } = await withAdmin((c) => c.query<{ autovacuum: string }>(plans.autovacuumSetting));
  if (rows[0]!.autovacuum === 'on') return adminUrl;
  process.stderr.write('the shared server has autovacuum off; starting a server of the bench\'s own with the defaults (autovacuum on)\n');
  const server = await startPrivatePostgres({ teardown: (fn) => cleanups.push(fn) }, { durable: true, maxConnections: 100 });
  return server.url;
}

const cleanups: (() => void)[] = [];
const server = await serverWithAutovacuum(cleanups);
// Completed jobs are kept a minute here instead of a day, so the bench can show retention at work.
const RETENTION_SECONDS = 60;
const db = await benchDatabase('backlog', { server, withQueue: true, env: { COMPLETED_RETENTION_SECONDS: String(RETENTION_SECONDS) } });
const es = await new FakeElasticsearch({ record: false }).start();
const pool = new pg.Pool({ connectionString: db.url, max: WRITERS + 2 });
try {
  await pool.query('VACUUM ANALYZE');
  const sizeBefore = await sizeMb(pool);

  const child = spawnService({ DATABASE_URL: db.url, ELASTICSEARCH_URL: es.url });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  while (!es.aliases.has('listings')) await new Promise((r) => setTimeout(r, 20));

  process.stderr.write('app writes with the queue idle\n');
  const idleWrites = await appWrites(pool);
  await new Promise((r) => setTimeout(r, 2000));
  const synced = es.count('listings');

  // The service pauses while the backlog is written, so the drain starts from a full queue.
  child.kill('SIGSTOP');
  process.stderr.write(`writing ${fmt(ROWS)} rows in 100,000-row statements\n`);
  for (let done = 0; done < ROWS; done += 100_000) {
    await pool.query(`INSERT INTO listings (seller_id, title, price_cents) SELECT gen_random_uuid(), 'backlog ' || i, i FROM generate_series(1, $1::int) i`, [Math.min(100_000, ROWS - done)]);
  }
  const sizeQueued = await sizeMb(pool);
  const target = synced + ROWS;

  process.stderr.write('draining\n');
  let peakRss = 0;
  const rssSampler = setInterval(() => (peakRss = Math.max(peakRss, rssMb(child.pid!))), 100);
  const statsTimes: number[] = [];
  const statsSampler = setInterval(() => void statsQueryMs(pool).then((ms) => statsTimes.push(ms)), 2000);
  const marks: number[] = [];
  const started = performance.now();
  child.kill('SIGCONT');
  let busyWrites = NaN;
  let writesDuring: Promise<number> | null = null;
  for (;;) {
    const done = es.count('listings') - synced;
    while (marks.length < 10 && done >= ((marks.length + 1) * ROWS) / 10) marks.push(performance.now());
    if (!writesDuring && done >= ROWS * 0.3) writesDuring = appWrites(pool);
    if (es.count('listings') >= target && writesDuring) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  busyWrites = await writesDuring!;
  const seconds = (marks[9]! - started) / 1000;
  clearInterval(rssSampler);
  clearInterval(statsSampler);
  child.kill('SIGTERM');
  await exited;

  // Retention: once completed jobs are past deleteAfterSeconds, pg-boss's maintenance deletes them
  // and VACUUM makes their space reusable (the files keep their size; new jobs fill it again).
  const sizeDrained = await sizeMb(pool);
  process.stderr.write(`waiting ${RETENTION_SECONDS} s for the completed jobs to age past retention\n`);
  await new Promise((r) => setTimeout(r, (RETENTION_SECONDS + 2) * 1000));
  const boss = new PgBoss({ connectionString: db.url, migrate: false, schedule: false, supervise: false, registerInstance: false, maintenanceIntervalSeconds: 1 });
  boss.on('error', () => {});
  await boss.start();
  await boss.supervise();
  await boss.stop({ graceful: false });
  await pool.query('VACUUM');
  const sizeAfter = await sizeMb(pool);
  const jobsLeft = Number((await pool.query(`SELECT count(*) AS n FROM pgboss.job WHERE state = 'completed'`)).rows[0].n);
  const freeMb = Number((await pool.query(`SELECT coalesce(sum(pg_relation_size(c.oid)), 0) AS b FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgboss'`)).rows[0].b) / 1024 / 1024;

  const tenths = marks.map((at, i) => {
    const from = i === 0 ? started : marks[i - 1]!;
    return (ROWS / 10) / ((at - from) / 1000);
  });
  console.log(`\nbacklog: ${fmt(ROWS)} jobs drained against the fake Elasticsearch in ${fmt(seconds, 1)} s (${fmt(ROWS / seconds)} rows/s)\n`);
  console.log(table(tenths.map((r, i) => ({ tenth: `${i * 10}-${i * 10 + 10}%`, 'rows/s': fmt(r) }))));
  console.log(`\nlast tenth / first tenth: ${fmt(tenths[9]! / tenths[0]!, 2)}×   peak worker RSS: ${fmt(peakRss)} MB`);
  console.log(`queue.stats during the drain: median ${fmt(percentile(statsTimes, 50), 1)} ms, max ${fmt(Math.max(...statsTimes), 1)} ms (${statsTimes.length} samples)`);
  console.log(`database size: ${fmt(sizeBefore)} MB before, ${fmt(sizeQueued)} MB with the backlog queued, ${fmt(sizeDrained)} MB drained, ${fmt(sizeAfter)} MB after retention and VACUUM (${fmt(jobsLeft)} completed jobs left; pgboss tables ${fmt(freeMb)} MB on disk, now mostly free space for new jobs)`);
  console.log(`app writes (${WRITERS} clients, single-row INSERTs): ${fmt(idleWrites)} rows/s with the queue idle, ${fmt(busyWrites)} rows/s during the drain: ${fmt(busyWrites / idleWrites, 2)}×`);
} finally {
  await pool.end();
  await es.stop();
  await db.drop();
  for (const cleanup of cleanups) cleanup();
}
