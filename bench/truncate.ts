// What capturing TRUNCATE costs: on one database with the queue, a table of ROWS listings emptied
// three ways, each from the same filled state: TRUNCATE with the capture trigger (shipped),
// TRUNCATE with it disabled (what TRUNCATE costs without the queue), and a DELETE of every row
// (what the app would otherwise run to keep the index right). Prints seconds and ratios against
// the DELETE.
//
//   npm run bench:truncate            (ROWS=100000 ROUNDS=3)
import { benchDatabase, fmt, median, table, timed, type BenchDatabase } from './lib.ts';

const ROWS = Number(process.env.ROWS ?? 100_000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);

const ways = {
  'TRUNCATE, capture trigger (shipped)': 'TRUNCATE listings CASCADE',
  // As RELIABILITY.md tells an operator to, when the capture is too slow (then reconcile --repair).
  'TRUNCATE, trigger disabled': `BEGIN;
    ALTER TABLE listings DISABLE TRIGGER queue_sync_truncate;
    ALTER TABLE inventory_items DISABLE TRIGGER queue_sync_truncate, DISABLE TRIGGER queue_image_cleanup_truncate;
    TRUNCATE listings CASCADE;
    ALTER TABLE listings ENABLE TRIGGER queue_sync_truncate;
    ALTER TABLE inventory_items ENABLE TRIGGER queue_sync_truncate, ENABLE TRIGGER queue_image_cleanup_truncate;
    COMMIT`,
  'DELETE of every row': 'DELETE FROM listings',
};

/** ROWS listings whose jobs are done and gone, as a table looks long after its writes. */
async function fill(db: BenchDatabase): Promise<void> {
  await db.pool.query(`INSERT INTO listings (seller_id, title, price_cents) SELECT gen_random_uuid(), 'row ' || i, i FROM generate_series(1, $1::int) i`, [ROWS]);
  await db.pool.query(`DELETE FROM pgboss.job`);
  await db.pool.query('VACUUM ANALYZE');
}

const seconds: Record<string, number[]> = Object.fromEntries(Object.keys(ways).map((name) => [name, []]));
/** The listings' sync jobs each way left: ROWS for the ways that keep the index right, else 0. */
const jobs: Record<string, number> = {};
const db = await benchDatabase('truncate', { withQueue: true });
try {
  await db.pool.query('TRUNCATE listings CASCADE'); // the sample rows out: every way empties exactly ROWS
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, sql] of Object.entries(ways)) {
      await fill(db); // every way leaves the table empty for the next fill
      const { ms } = await timed(() => db.pool.query(sql));
      seconds[name]!.push(ms / 1000);
      const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'search-sync.listings'`);
      jobs[name] = rows[0]!.n;
    }
  }
} finally {
  await db.drop();
}

const deleteSeconds = median(seconds['DELETE of every row']!);
console.log(`\nemptying a table of ${fmt(ROWS)} listings (and their items), median of ${ROUNDS} rounds\n`);
console.log(
  table(
    Object.entries(seconds).map(([name, runs]) => ({
      way: name,
      seconds: fmt(median(runs), 3),
      'vs DELETE': fmt(median(runs) / deleteSeconds, 2) + '×',
      'sync jobs enqueued': fmt(jobs[name]!),
    })),
  ),
);
