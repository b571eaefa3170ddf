// How fast `SELECT * FROM queue.stats` answers on a job table of 1,000,000 rows, in three shapes:
//
//   steady   a day of retained history: 900,000 completed over 24 h (~37,500 in the last hour),
//            50,000 queued, 20,000 retrying, 500 active, 9,500 failed, 20,000 dead letters
//   outage   Elasticsearch down for two hours: 1,000,000 queued
//   burst    a reindex just went through: 1,000,000 completed within the last hour
//
// Each shape runs on a fresh database after VACUUM ANALYZE (what autovacuum leaves), and is
// measured against a baseline in the same run: the one-pass GROUP BY a first attempt would write
// (every count, the oldest job and the percentiles straight from the job table). Prints the
// timings, the ratio, and the plan of queue.stats for the steady shape (PLAN=all for every shape).
//
//   npm run bench:stats-views            (ROWS=1000000 RUNS=7 SHAPES=steady,outage,burst)
import { benchDatabase, fmt, median, percentile, table, timed, type BenchDatabase } from './lib.ts';

const ROWS = Number(process.env.ROWS ?? 1_000_000);
const RUNS = Number(process.env.RUNS ?? 7);
const SHAPES = (process.env.SHAPES ?? 'steady,outage,burst').split(',');
const PLAN = process.env.PLAN ?? 'steady';
const BUDGET_MS = 250;

const Q = 'search-sync.listings';
const DEAD = 'search-sync.listings.dead';

/** Inserts `count` jobs of one state; `when` is SQL for the row's created_on, given `i`. */
function jobs(count: number, state: string, when: string, extra: { start?: string; started?: string; completed?: string; output?: string; retryCount?: number } = {}): string {
  const started = extra.started ?? 'NULL';
  const completed = extra.completed ?? 'NULL';
  return `
    INSERT INTO pgboss.job (id, name, data, state, singleton_key, policy, retry_limit, retry_count,
                            created_on, start_after, started_on, completed_on, output, dead_letter)
    SELECT gen_random_uuid(), '${Q}', jsonb_build_object('table', 'listings', 'id', k), '${state}', k, 'stately', 8,
           ${extra.retryCount ?? 0}, c, ${extra.start ?? 'c'}, ${started}, ${completed}, ${extra.output ?? 'NULL'}, '${DEAD}'
    FROM (SELECT gen_random_uuid()::text AS k, ${when} AS c, random() AS r FROM generate_series(1, ${count}) i) s`;
}

function deadLetters(count: number): string {
  return `
    INSERT INTO pgboss.job (id, name, data, state, singleton_key, policy, retry_limit, created_on, start_after,
                            source_name, source_id, source_retry_count, source_output, source_created_on)
    SELECT gen_random_uuid(), '${DEAD}', jsonb_build_object('table', 'listings', 'id', k), 'created', k, 'standard', 0, c, c,
           '${Q}', gen_random_uuid(), 8, '{"status":400,"error":"mapper_parsing_exception","reason":"failed to parse"}', c - interval '1 hour'
    FROM (SELECT gen_random_uuid()::text AS k, now() - i * interval '86400 seconds' / ${count} AS c FROM generate_series(1, ${count}) i) s`;
}

const failure = `'{"status":503,"error":"request_failed","reason":"unavailable"}'::jsonb`;

function shapeSql(shape: string, rows: number): string[] {
  const part = (fraction: number) => Math.round(rows * fraction);
  switch (shape) {
    case 'steady':
      return [
        jobs(part(0.9), 'completed', `now() - i * interval '86400 seconds' / ${part(0.9)}`, {
          started: "c + r * interval '2 seconds'",
          completed: "c + r * interval '2 seconds' + r * interval '0.5 seconds'",
          output: `'{"result":"indexed"}'::jsonb`,
        }),
        jobs(part(0.05), 'created', `now() - i * interval '600 seconds' / ${part(0.05)}`),
        jobs(part(0.02), 'retry', `now() - i * interval '3600 seconds' / ${part(0.02)}`, {
          start: "now() + interval '30 seconds'",
          started: "c + interval '5 seconds'",
          output: failure,
          retryCount: 2,
        }),
        jobs(part(0.0005), 'active', "now() - interval '2 seconds'", { started: "now() - interval '1 second'" }),
        jobs(part(0.0095), 'failed', `now() - i * interval '86400 seconds' / ${part(0.0095)}`, {
          started: "c + interval '200 seconds'",
          completed: "c + interval '201 seconds'",
          output: failure,
          retryCount: 8,
        }),
        deadLetters(part(0.02)),
      ];
    case 'outage':
      return [jobs(rows, 'created', `now() - i * interval '7200 seconds' / ${rows}`)];
    case 'burst':
      return [
        jobs(rows, 'completed', `now() - interval '59 minutes' + i * interval '3480 seconds' / ${rows}`, {
          started: "c + r * interval '1 second'",
          completed: "c + r * interval '1 second' + interval '0.05 seconds'",
          output: `'{"result":"indexed"}'::jsonb`,
        }),
      ];
    default:
      throw new Error(`unknown shape "${shape}" (use steady, outage, burst)`);
  }
}

// The baseline: one pass over the job table, as a first attempt at the view would be written.
const naiveStats = `
  SELECT j.name AS queue,
    count(*) FILTER (WHERE j.state = 'created' AND j.start_after <= now()) AS queued,
    count(*) FILTER (WHERE j.state = 'created' AND j.start_after > now()) AS deferred,
    count(*) FILTER (WHERE j.state = 'retry') AS retrying,
    count(*) FILTER (WHERE j.state = 'active') AS active,
    count(*) FILTER (WHERE j.state = 'failed') AS failed,
    count(*) FILTER (WHERE j.state = 'completed' AND j.completed_on > now() - interval '1 hour') AS completed_last_hour,
    count(*) FILTER (WHERE j.state = 'failed' AND j.completed_on > now() - interval '1 hour') AS failed_last_hour,
    count(*) FILTER (WHERE j.state IN ('completed', 'failed') AND j.completed_on > now() - interval '5 minutes') / 5.0 AS jobs_per_minute,
    min(j.created_on) FILTER (WHERE j.state IN ('created', 'retry')) AS oldest_waiting_since,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY j.started_on - GREATEST(j.created_on, j.start_after))
      FILTER (WHERE j.state IN ('completed', 'failed') AND j.completed_on > now() - interval '1 hour') AS wait_p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY j.started_on - GREATEST(j.created_on, j.start_after))
      FILTER (WHERE j.state IN ('completed', 'failed') AND j.completed_on > now() - interval '1 hour') AS wait_p95,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY j.completed_on - j.started_on)
      FILTER (WHERE j.state IN ('completed', 'failed') AND j.completed_on > now() - interval '1 hour') AS run_p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY j.completed_on - j.started_on)
      FILTER (WHERE j.state IN ('completed', 'failed') AND j.completed_on > now() - interval '1 hour') AS run_p95
  FROM pgboss.job j
  GROUP BY j.name`;

async function measure(db: BenchDatabase, sql: string): Promise<{ median: number; p95: number }> {
  await db.pool.query(sql); // warm the cache and the plan, as a dashboard polling the view would
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push((await timed(() => db.pool.query(sql))).ms);
  return { median: median(times), p95: percentile(times, 95) };
}

/**
 * The plans inside queue.queue_stats() and the queue.queue_gauges() it reads, which EXPLAIN of the
 * view shows only as function scans.
 */
async function statsPlan(db: BenchDatabase): Promise<string> {
  const client = await db.pool.connect();
  try {
    await client.query('SET jit = off'); // as the functions run
    const plans: string[] = [];
    for (const fn of ['queue.queue_gauges()', 'queue.queue_stats()']) {
      const { rows: [source] } = await client.query<{ src: string }>(`SELECT prosrc AS src FROM pg_proc WHERE oid = $1::regprocedure`, [fn]);
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${source!.src}`);
      plans.push(`-- ${fn}\n${rows.map((r) => r['QUERY PLAN']).join('\n')}`);
    }
    return plans.join('\n\n');
  } finally {
    client.release();
  }
}

async function runShape(shape: string) {
  const db = await benchDatabase(`stats_${shape}`, { withQueue: true });
  try {
    const fill = await timed(async () => {
      for (const sql of shapeSql(shape, ROWS)) await db.pool.query(sql);
      await db.pool.query('VACUUM ANALYZE pgboss.job');
    });
    const { rows: [count] } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgboss.job');
    const ours = await measure(db, 'SELECT * FROM queue.stats');
    const naive = await measure(db, naiveStats);
    const plan = PLAN === 'all' || PLAN === shape ? await statsPlan(db) : null;
    return { shape, rows: count!.n, fillSeconds: fill.ms / 1000, ours, naive, plan };
  } finally {
    await db.drop();
  }
}

const results = [];
for (const shape of SHAPES) {
  process.stderr.write(`filling ${fmt(ROWS)} job rows (${shape})...\n`);
  results.push(await runShape(shape));
}

console.log(`\nSELECT * FROM queue.stats, median of ${RUNS} runs after one warm-up; budget ${BUDGET_MS} ms\n`);
console.log(table(results.map((r) => ({
  shape: r.shape,
  'job rows': fmt(r.rows),
  'queue.stats ms (median)': fmt(r.ours.median, 1),
  'queue.stats ms (p95)': fmt(r.ours.p95, 1),
  'one-pass GROUP BY ms': fmt(r.naive.median, 1),
  'faster by': `${fmt(r.naive.median / r.ours.median, 1)}x`,
  [`within ${BUDGET_MS} ms`]: r.ours.p95 <= BUDGET_MS ? 'yes' : 'no',
}))));
for (const r of results) {
  if (r.plan) console.log(`\nplans (${r.shape}):\n${r.plan}`);
}
