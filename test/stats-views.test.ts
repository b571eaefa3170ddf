import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { readEnv } from '../src/config/env.ts';
import { packageRoot } from '../src/config/paths.ts';
import { queueConfigs } from '../src/config/queues.ts';
import { connect, createTestDatabase, type TestDatabase } from './helpers/database.ts';

const LISTINGS = 'search-sync.listings';
const DEAD = 'search-sync.listings.dead';

interface JobRow {
  queue?: string;
  state: string;
  created: number;
  startAfter?: number;
  started?: number;
  completed?: number;
  output?: unknown;
  retryCount?: number;
  data?: unknown;
  key?: string;
  source?: { queue: string; retryCount: number; output: unknown };
}

/** Inserts job rows as pg-boss writes them, at times given in seconds from `base` (negative: before). */
async function insertJobs(db: TestDatabase, base: Date, jobs: JobRow[]): Promise<string[]> {
  const at = (seconds: number | undefined) => (seconds === undefined ? null : new Date(base.getTime() + seconds * 1000));
  const ids: string[] = [];
  for (const job of jobs) {
    const queue = job.queue ?? LISTINGS;
    const key = job.key ?? randomUUID();
    const [row] = await db.query<{ id: string }>(
      `INSERT INTO pgboss.job (name, data, state, singleton_key, policy, retry_limit, retry_count, created_on, start_after,
                               started_on, completed_on, output, dead_letter, source_name, source_id, source_retry_count, source_output, source_created_on)
       VALUES ($1, $2, $3, $4, $5, 8, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
       RETURNING id`,
      [
        queue, JSON.stringify(job.data ?? { table: 'listings', id: key }), job.state, key, queue === LISTINGS ? 'stately' : 'standard',
        job.retryCount ?? 0, at(job.created), at(job.startAfter ?? job.created), at(job.started), at(job.completed),
        job.output === undefined ? null : JSON.stringify(job.output), queue === LISTINGS ? DEAD : null,
        job.source?.queue ?? null, job.source ? randomUUID() : null, job.source?.retryCount ?? null,
        job.source ? JSON.stringify(job.source.output) : null, job.source ? at(job.created - 60) : null,
      ],
    );
    ids.push(row!.id);
  }
  return ids;
}

const unavailable = { status: 503, error: 'request_failed', reason: 'unavailable' };
const rejected = { status: 400, error: 'document_parsing_exception', reason: 'failed to parse field [price_cents]' };

/** Completed jobs with known wait (start - created) and run (complete - start) times. */
const finished = (state: string, completedAgo: number, wait: number, run: number): JobRow => ({
  state,
  created: -completedAgo - run - wait,
  started: -completedAgo - run,
  completed: -completedAgo,
  output: state === 'failed' ? rejected : { result: 'indexed' },
  retryCount: state === 'failed' ? 8 : 0,
});

/** The known job rows every view test reads. */
async function knownRows(db: TestDatabase) {
  const [{ now: base }] = (await db.query<{ now: Date }>('SELECT now()')) as [{ now: Date }];
  await insertJobs(db, base, [
    { state: 'created', created: -10 },
    { state: 'created', created: -20 },
    { state: 'created', created: -30 },
    { state: 'created', created: -100, startAfter: 3600 },
    { state: 'retry', created: -600, startAfter: 30, started: -590, output: unavailable, retryCount: 2 },
    { state: 'retry', created: -50, startAfter: 30, started: -45, output: unavailable, retryCount: 2 },
    { state: 'active', created: -5, started: -2 },
    finished('completed', 60, 1, 0.1),
    finished('completed', 120, 2, 0.2),
    finished('completed', 1800, 3, 0.3),
    finished('completed', 1801, 4, 0.4),
    finished('completed', 1802, 10, 1.0),
    finished('completed', 7200, 99, 9),
    finished('failed', 2400, 5, 0.5),
    finished('failed', 7200, 99, 9),
  ]);
  const deadLetters = await insertJobs(db, base, [
    { queue: DEAD, state: 'created', created: -300, source: { queue: LISTINGS, retryCount: 8, output: rejected } },
    { queue: DEAD, state: 'created', created: -200, source: { queue: LISTINGS, retryCount: 8, output: rejected } },
  ]);
  return { base, deadLetters };
}

t.test('queue.stats counts each state, the last hour, the oldest waiting job and the percentiles of known jobs', async (t) => {
  const db = await createTestDatabase(t);
  const { base } = await knownRows(db);
  const rows = await db.query('SELECT * FROM queue.stats ORDER BY queue');
  t.same(rows.map((r) => r.queue), queueConfigs(readEnv({})).map((q) => q.name).sort(), 'one row per queue, none of pg-boss\'s own');

  const listings = rows.find((r) => r.queue === LISTINGS)!;
  t.match(listings, {
    kind: 'queue',
    dead_letter_queue: DEAD,
    queued: 3,
    deferred: 1,
    retrying: 2,
    active: 1,
    failed: 2,
    dead_lettered: 2,
    completed_last_hour: 5,
    failed_last_hour: 1,
    jobs_per_minute: 0.4,
    wait_p50_seconds: 3.5,
    wait_p95_seconds: 8.75,
    run_p50_seconds: 0.35,
    run_p95_seconds: 0.875,
  });
  t.equal((listings.oldest_waiting_since as Date).getTime(), base.getTime() - 600_000, 'the oldest waiting job is the retrying one, not the deferred one');
  t.ok(listings.oldest_waiting_seconds >= 600 && listings.oldest_waiting_seconds < 610, `oldest waiting ${listings.oldest_waiting_seconds} s`);

  t.match(rows.find((r) => r.queue === DEAD), { kind: 'dead-letter', dead_letter_queue: null, queued: 2, dead_lettered: 0 }, 'a dead-letter queue shows its dead letters as queued');
  t.match(rows.find((r) => r.queue === 'search-sync.inventory_items'), {
    queued: 0, retrying: 0, failed: 0, dead_lettered: 0, completed_last_hour: 0, jobs_per_minute: 0,
    oldest_waiting_seconds: null, wait_p50_seconds: null, run_p95_seconds: null,
  }, 'an idle queue has zeros and no ages');
});

t.test('queue.throughput has every minute of 24 hours, with the jobs that finished in each', async (t) => {
  const db = await createTestDatabase(t);
  const { base } = await knownRows(db);
  const [day] = await db.query(
    `SELECT count(*)::int AS minutes, sum(completed)::int AS completed, sum(failed)::int AS failed FROM queue.throughput WHERE queue = $1`,
    [LISTINGS],
  );
  t.same(day, { minutes: 1440, completed: 6, failed: 2 });
  const [hour] = await db.query(
    `SELECT count(*)::int AS minutes, sum(completed)::int AS completed, sum(failed)::int AS failed
     FROM queue.throughput_since(now() - interval '59 minutes') WHERE queue = $1`,
    [LISTINGS],
  );
  t.same(hour, { minutes: 60, completed: 5, failed: 1 });
  const [minute] = await db.query(
    `SELECT completed, failed FROM queue.throughput WHERE queue = $1 AND minute = date_trunc('minute', $2::timestamptz - interval '120 seconds')`,
    [LISTINGS, base],
  );
  t.same(minute, { completed: 1, failed: 0 }, 'a job lands in the minute it finished');
});

t.test('queue.recent_failures shows the last error of retrying and failed jobs, newest first', async (t) => {
  const db = await createTestDatabase(t);
  await knownRows(db);
  const rows = await db.query(`SELECT queue, state, error, attempt, max_attempts, failed_at IS NOT NULL AS has_failed_at,
                                      next_attempt_at IS NOT NULL AS has_next_attempt, dead_letter_queue, data ? 'id' AS has_row
                               FROM queue.recent_failures`);
  t.same(rows.map((r) => [r.state, r.error, r.attempt]), [
    ['retry', 'request_failed: unavailable', 3],
    ['retry', 'request_failed: unavailable', 3],
    ['failed', 'document_parsing_exception: failed to parse field [price_cents]', 9],
    ['failed', 'document_parsing_exception: failed to parse field [price_cents]', 9],
  ]);
  t.match(rows[0], { queue: LISTINGS, max_attempts: 9, has_failed_at: false, has_next_attempt: true, dead_letter_queue: DEAD, has_row: true });
  t.match(rows[2], { has_failed_at: true, has_next_attempt: false });
});

t.test('queue.dead_letters shows each dead letter with its source queue, row, error and attempts', async (t) => {
  const db = await createTestDatabase(t);
  const { deadLetters } = await knownRows(db);
  const rows = await db.query(`SELECT * FROM queue.dead_letters ORDER BY dead_lettered_at DESC`);
  t.same(rows.map((r) => r.job_id), [deadLetters[1], deadLetters[0]]);
  t.match(rows[0], {
    dead_letter_queue: DEAD,
    source_queue: LISTINGS,
    data: { table: 'listings', id: String },
    error: 'document_parsing_exception: failed to parse field [price_cents]',
    output: rejected,
    attempts: 9,
    source_job_id: String,
  });
});

t.test('queue.replay_dead_letters enqueues each row once, joins a job already waiting and leaves rowless letters', async (t) => {
  const db = await createTestDatabase(t);
  const [{ now: base }] = (await db.query<{ now: Date }>('SELECT now()')) as [{ now: Date }];
  const lonely = randomUUID();
  const waiting = randomUUID();
  const source = { queue: LISTINGS, retryCount: 8, output: rejected };
  const [waitingJob] = await insertJobs(db, base, [{ state: 'created', created: -5, key: waiting }]);
  const [a, b, c, rowless] = await insertJobs(db, base, [
    { queue: DEAD, state: 'created', created: -30, key: lonely, source },
    { queue: DEAD, state: 'created', created: -20, key: lonely, source },
    { queue: DEAD, state: 'created', created: -10, key: waiting, source },
    { queue: DEAD, state: 'created', created: -10, data: { table: 'listings' }, source },
  ]);

  const [result] = await db.query(`SELECT * FROM queue.replay_dead_letters($1)`, [LISTINGS]);
  t.same(new Set(result!.replayed_ids), new Set([a, b, c]));
  t.equal(result!.jobs_created, 1, 'one new job for the row without one; the other joined the waiting job');
  t.same(result!.skipped_ids, [rowless]);

  const queued = await db.query(`SELECT id, singleton_key AS key FROM pgboss.job WHERE name = $1 AND state = 'created' ORDER BY key`, [LISTINGS]);
  t.same(queued.map((r) => r.key).sort(), [lonely, waiting].sort(), 'each row has exactly one waiting job');
  t.ok(queued.some((r) => r.id === waitingJob), 'the waiting job is the one that was there');
  t.same((await db.query(`SELECT id FROM pgboss.job WHERE name = $1`, [DEAD])).map((r) => r.id), [rowless], 'only the rowless dead letter stays');
});

t.test('queue.replay_dead_letters replays only the ids given, and names a queue without dead letters', async (t) => {
  const db = await createTestDatabase(t);
  const [{ now: base }] = (await db.query<{ now: Date }>('SELECT now()')) as [{ now: Date }];
  const source = { queue: LISTINGS, retryCount: 8, output: rejected };
  const [first, second] = await insertJobs(db, base, [
    { queue: DEAD, state: 'created', created: -30, source },
    { queue: DEAD, state: 'created', created: -20, source },
  ]);
  const [result] = await db.query(`SELECT * FROM queue.replay_dead_letters($1, $2::uuid[])`, [LISTINGS, [second]]);
  t.same(result, { replayed_ids: [second], jobs_created: 1, skipped_ids: [] });
  t.same((await db.query(`SELECT id FROM pgboss.job WHERE name = $1`, [DEAD])).map((r) => r.id), [first]);
  await t.rejects(db.query(`SELECT * FROM queue.replay_dead_letters($1)`, [DEAD]), /search-sync.listings.dead is not a queue with a dead-letter queue/);
});

t.test('queue_monitor reads every view and nothing else; anon and authenticated read none', async (t) => {
  const db = await createTestDatabase(t);
  await knownRows(db);
  const views = ['queue.stats', 'queue.throughput', 'queue.recent_failures', 'queue.dead_letters'];
  const monitor = await connect(db.url, 'queue_monitor');
  t.teardown(() => monitor.end());
  for (const view of views) {
    const { rowCount } = await monitor.query(`SELECT * FROM ${view}`);
    t.ok(rowCount! > 0, `queue_monitor reads ${view}`);
  }
  await t.rejects(monitor.query('SELECT * FROM pgboss.job'), /permission denied/, 'but not the job table');
  await t.rejects(monitor.query(`SELECT queue.replay_dead_letters('${LISTINGS}')`), /permission denied/, 'and changes nothing');
  for (const role of ['anon', 'authenticated']) {
    const client = await connect(db.url, role);
    t.teardown(() => client.end());
    for (const view of views) await t.rejects(client.query(`SELECT * FROM ${view}`), /permission denied/, `${role} cannot read ${view}`);
    await t.rejects(client.query('SELECT * FROM queue.queue_stats()'), /permission denied/, `${role} cannot call the function behind queue.stats`);
  }
});

t.test('queue.grant_monitoring gives a role created after migrate the same read access', async (t) => {
  const db = await createTestDatabase(t);
  const role = `qs_monitor_${process.pid}`;
  await db.query(`CREATE ROLE ${role} NOLOGIN`);
  const client = await connect(db.url, role);
  try {
    await t.rejects(client.query('SELECT * FROM queue.stats'), /permission denied/);
    await db.query(`SELECT queue.grant_monitoring($1)`, [role]);
    t.equal((await client.query('SELECT * FROM queue.stats')).rowCount, queueConfigs(readEnv({})).length);
  } finally {
    await client.end();
    await db.query(`DROP OWNED BY ${role}`);
    await db.query(`DROP ROLE ${role}`);
  }
});

t.test('npm run stats prints queue.stats as a table', async (t) => {
  const db = await createTestDatabase(t);
  await knownRows(db);
  const run = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [join(packageRoot, 'src/cli/main.ts'), 'stats', ...args], {
        env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'silent' },
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('exit', (code) => resolve({ code, out, err }));
    });
  const { code, out } = await run([]);
  t.equal(code, 0);
  const lines = out.trimEnd().split('\n');
  t.match(lines[0], /^queue\s+queued\s+deferred\s+retrying\s+active\s+failed\s+dead letters\s+done 1h\s+failed 1h\s+jobs\/min\s+oldest waiting\s+wait p50 \/ p95\s+run p50 \/ p95$/);
  t.match(lines[1], /^-+( +-+)+$/);
  const listings = lines.find((l) => l.startsWith(`${LISTINGS} `))!;
  t.match(listings.split(/\s{2,}/), [LISTINGS, '3', '1', '2', '1', '2', '2', '5', '1', '0.4', /^10 min \d+ s$/, '3.5 s / 8.8 s', '350 ms / 875 ms']);
  t.equal(lines.length, 2 + queueConfigs(readEnv({})).length, 'a header, a rule and a line per queue');

  const asJson = await run(['--json']);
  t.match(JSON.parse(asJson.out), [{ queue: String, queued: Number }]);
  const bad = await run(['--verbose']);
  t.equal(bad.code, 1);
  t.match(bad.err, /unknown option --verbose/);
});
