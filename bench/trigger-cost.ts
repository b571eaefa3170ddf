// What enqueueing costs the app's writes. One run measures every variant on a fresh database:
// no trigger, the legacy polling-table trigger, a naive per-row pg-boss trigger, this project's
// statement-level trigger run per row instead, and this project's trigger (with and without the
// notify debounce). Prints rows/s and ratios against the legacy design.
//
//   npm run bench:trigger-cost            (ROWS=20000 CLIENTS=10 BULK=100000 ROUNDS=3)
import { benchDatabase, fmt, legacySql, median, table, timed, type BenchDatabase } from './lib.ts';

const ROWS = Number(process.env.ROWS ?? 20_000);
const CLIENTS = Number(process.env.CLIENTS ?? 10);
const BULK = Number(process.env.BULK ?? 100_000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);

const INSERT_ONE = `INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), $1, $2)`;
const INSERT_BULK = `INSERT INTO listings (seller_id, title, price_cents)
                     SELECT gen_random_uuid(), 'bulk ' || i, i FROM generate_series(1, $1::int) i`;

const dropQueueTriggers = `
  DROP TRIGGER queue_sync_insert ON listings; DROP TRIGGER queue_sync_update ON listings; DROP TRIGGER queue_sync_delete ON listings;`;

// One job per row, a NOTIFY per row: what boss.send() (insertJobs with notify) from a row trigger
// amounts to.
const naiveRowTrigger = `
  ${dropQueueTriggers}
  CREATE FUNCTION queue.naive_listing_job() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  BEGIN
    INSERT INTO pgboss.job (id, name, data, priority, start_after, created_on, singleton_key, expire_seconds, deletion_seconds,
                            keep_until, retry_limit, retry_delay, retry_backoff, retry_delay_max, policy, dead_letter)
    SELECT gen_random_uuid(), q.name, jsonb_build_object('table', 'listings', 'id', NEW.id), 0, now(), now(), NEW.id::text,
           q.expire_seconds, q.deletion_seconds, now() + q.retention_seconds * interval '1s', q.retry_limit, q.retry_delay,
           q.retry_backoff, q.retry_delay_max, q.policy, q.dead_letter
    FROM pgboss.queue q WHERE q.name = 'search-sync.listings'
    ON CONFLICT DO NOTHING;
    PERFORM pg_notify(queue.notify_channel(), 'search-sync.listings');
    RETURN NULL;
  END $$;
  CREATE TRIGGER naive AFTER INSERT ON listings FOR EACH ROW EXECUTE FUNCTION queue.naive_listing_job();`;

// This project's insert path (coalescing enqueue, debounced notify), fired per row.
const rowLevelVariant = `
  ${dropQueueTriggers}
  CREATE FUNCTION queue.row_listing_job() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  DECLARE now_ms bigint;
  BEGIN
    IF queue.listings_enqueue(ARRAY[NEW.id::text]) > 0 THEN
      now_ms := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
      IF now_ms - (SELECT last_value FROM queue.listings_wake_clock) >= 20 THEN
        PERFORM setval('queue.listings_wake_clock', now_ms);
        PERFORM pg_notify(queue.notify_channel(), 'search-sync.listings');
      END IF;
    END IF;
    RETURN NULL;
  END $$;
  CREATE TRIGGER row_level AFTER INSERT ON listings FOR EACH ROW EXECUTE FUNCTION queue.row_listing_job();`;

// The floor pg-boss's job table sets: a statement trigger that only inserts the jobs, with no
// versions, no coalescing and no wake-up.
const bareJobInsert = `
  ${dropQueueTriggers}
  DO $$ DECLARE t text; BEGIN
    SELECT table_name INTO t FROM pgboss.queue WHERE name = 'search-sync.listings';
    EXECUTE format($f$
      CREATE FUNCTION queue.bare_listing_jobs() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $b$
      BEGIN
        INSERT INTO pgboss.%I (id, name, data, singleton_key, policy, dead_letter, retry_limit)
        SELECT gen_random_uuid(), 'search-sync.listings', jsonb_build_object('table', 'listings', 'id', n.id), n.id::text,
               'stately', 'search-sync.listings.dead', 8
        FROM new_rows n;
        RETURN NULL;
      END $b$ $f$, t);
  END $$;
  CREATE TRIGGER bare AFTER INSERT ON listings REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION queue.bare_listing_jobs();`;

// The same floor without pg-boss's two foreign keys from job to queue: each job insert checks
// them with a KEY SHARE lock on the one queue row every writer shares. Measured only to show
// what the floor is made of; pg-boss's schema is not ours to change.
const withoutQueueForeignKeys = `
  DO $$ DECLARE fk record; BEGIN
    FOR fk IN SELECT conrelid::regclass AS rel, conname FROM pg_constraint
              WHERE connamespace = 'pgboss'::regnamespace AND contype = 'f' AND conname IN ('q_fkey', 'dlq_fkey') LOOP
      EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.rel, fk.conname);
    END LOOP;
  END $$;`;

// The shipped trigger without its document versions for inserts and updates (what latest-state-wins
// costs a write; the shipped insert only looks for a tombstone to move past).
const withoutVersions = `
  DO $$ DECLARE src text; BEGIN
    SELECT pg_get_functiondef('queue.listings_changed()'::regprocedure) INTO src;
    src := regexp_replace(src, 'UPDATE queue\\.listings_version AS v SET version = .*?\\[\\]\\);', '');
    src := regexp_replace(src, ', versioned AS \\(.*?ON CONFLICT \\(id\\) DO UPDATE SET version = EXCLUDED.version\\s*\\)', '');
    IF src ~ 'versioned|UPDATE queue' THEN RAISE EXCEPTION 'bench: could not strip the versions from the trigger'; END IF;
    EXECUTE src;
  END $$;`;

// The shipped trigger with its debounce window at 0 ms: a NOTIFY on every write.
const notifyEveryWrite = `
  DO $$ DECLARE src text; BEGIN
    SELECT pg_get_functiondef('queue.listings_changed()'::regprocedure) INTO src;
    EXECUTE replace(src, '>= 20 THEN', '>= 0 THEN');
  END $$;`;

interface Variant {
  name: string;
  setup: () => Promise<BenchDatabase>;
  /** Why the bulk statement is not measured for this variant. */
  skipBulk?: string;
  /** Replaces only the INSERT trigger: its UPDATEs run with no trigger at all, so are not reported. */
  insertOnly?: boolean;
}

const variants: Variant[] = [
  { name: 'no trigger', setup: () => benchDatabase('none') },
  { name: 'legacy polling-table trigger', setup: async () => benchDatabase('legacy', { extraSql: [await legacySql()] }) },
  { name: 'naive row trigger, pg-boss job + NOTIFY per row', setup: () => benchDatabase('naive', { withQueue: true, extraSql: [naiveRowTrigger] }), insertOnly: true },
  {
    name: 'queue-service logic as a row trigger',
    setup: () => benchDatabase('rowlevel', { withQueue: true, extraSql: [rowLevelVariant] }),
    // Each row's lock-and-coalesce lookup runs on a plan made while the job table looked empty,
    // so one big statement turns quadratic: minutes for 100,000 rows.
    skipBulk: 'quadratic',
    insertOnly: true,
  },
  { name: 'floor: bare pg-boss job INSERT per statement', setup: () => benchDatabase('bare', { withQueue: true, extraSql: [bareJobInsert] }), insertOnly: true },
  {
    name: "floor without pg-boss's job → queue foreign keys",
    setup: () => benchDatabase('barenofk', { withQueue: true, extraSql: [bareJobInsert, withoutQueueForeignKeys] }),
    insertOnly: true,
  },
  { name: 'queue-service without document versions', setup: () => benchDatabase('noversions', { withQueue: true, extraSql: [withoutVersions] }) },
  { name: 'queue-service, NOTIFY on every write', setup: () => benchDatabase('notifyall', { withQueue: true, extraSql: [notifyEveryWrite] }) },
  { name: 'queue-service (shipped)', setup: () => benchDatabase('queue', { withQueue: true }) },
];

/** ROWS single-row statements from CLIENTS connections at once; rows per second. */
async function fromClients(db: BenchDatabase, statement: (client: number, i: number) => { name: string; text: string; values: unknown[] }): Promise<number> {
  const perClient = Math.ceil(ROWS / CLIENTS);
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => db.pool.connect()));
  try {
    const { ms } = await timed(() =>
      Promise.all(
        clients.map(async (client, c) => {
          for (let i = 0; i < perClient; i++) await client.query(statement(c, i));
        }),
      ),
    );
    return (perClient * CLIENTS) / (ms / 1000);
  } finally {
    clients.forEach((c) => c.release());
  }
}

const singleRowWrites = (db: BenchDatabase) =>
  fromClients(db, (c, i) => ({ name: 'insert-one', text: INSERT_ONE, values: [`listing ${c}-${i}`, i] }));

const HOT_ROWS = 1000;

/** Single-row UPDATEs spread over a set of hot rows: what a busy app does to its listings. */
async function hotRowUpdates(db: BenchDatabase): Promise<number> {
  const { rows } = await db.pool.query<{ id: string }>(
    `INSERT INTO listings (seller_id, title, price_cents) SELECT gen_random_uuid(), 'hot ' || i, i FROM generate_series(1, $1::int) i RETURNING id`,
    [HOT_ROWS],
  );
  const ids = rows.map((r) => r.id);
  const perClient = Math.ceil(ROWS / CLIENTS);
  return fromClients(db, (c, i) => ({
    name: 'update-one',
    text: 'UPDATE listings SET price_cents = price_cents + 1 WHERE id = $1',
    values: [ids[(c * perClient + i * 7) % ids.length]],
  }));
}

async function bulkStatement(db: BenchDatabase): Promise<number> {
  const { ms } = await timed(() => db.pool.query(INSERT_BULK, [BULK]));
  return BULK / (ms / 1000);
}

async function measure(variant: Variant): Promise<{ single: number; updates: number; bulk: number }> {
  const singles: number[] = [];
  const updates: number[] = [];
  const bulks: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const db = await variant.setup();
    try {
      await db.pool.query('VACUUM ANALYZE');
      singles.push(await singleRowWrites(db));
      updates.push(await hotRowUpdates(db));
      if (!variant.skipBulk) bulks.push(await bulkStatement(db));
    } finally {
      await db.drop();
    }
  }
  return { single: median(singles), updates: median(updates), bulk: variant.skipBulk ? NaN : median(bulks) };
}

const results: { name: string; single: number; updates: number; bulk: number; insertOnly: boolean }[] = [];
for (const variant of variants) {
  process.stderr.write(`measuring: ${variant.name}\n`);
  results.push({ name: variant.name, ...(await measure(variant)), insertOnly: variant.insertOnly ?? false });
}

const legacy = results.find((r) => r.name.startsWith('legacy'))!;
const none = results.find((r) => r.name === 'no trigger')!;
console.log(
  `\ntrigger cost, median of ${ROUNDS} rounds: ${fmt(ROWS)} single-row INSERTs from ${CLIENTS} clients; ${fmt(ROWS)} single-row UPDATEs ` +
    `of ${fmt(HOT_ROWS)} hot rows from ${CLIENTS} clients; one ${fmt(BULK)}-row INSERT ... SELECT\n`,
);
console.log(
  table(
    results.map((r) => ({
      variant: r.name,
      'single-row rows/s': fmt(r.single),
      'vs legacy': fmt(r.single / legacy.single, 2) + '×',
      'vs none': fmt(r.single / none.single, 2) + '×',
      'hot updates/s': r.insertOnly ? 'n/a' : fmt(r.updates),
      'updates vs legacy': r.insertOnly ? '' : fmt(r.updates / legacy.updates, 2) + '×',
      'bulk rows/s': Number.isNaN(r.bulk) ? 'not run' : fmt(r.bulk),
      'bulk vs legacy': Number.isNaN(r.bulk) ? '' : fmt(r.bulk / legacy.bulk, 2) + '×',
      'bulk s': Number.isNaN(r.bulk) ? '' : fmt(BULK / r.bulk, 2),
    })),
  ),
);
