import { randomUUID } from 'node:crypto';
import t from 'tap';
import { startBoss } from './helpers/boss.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { insertListings } from './sync-scenarios.ts';

const SYNC = 'search-sync.listings';
const DEAD = 'search-sync.listings.dead';

/** Moves a job's clock back, as if it had been created (and finished) that long ago. */
const age = (db: TestDatabase, id: string, interval: string) =>
  db.query(
    `UPDATE pgboss.job SET created_on = created_on - $2::interval, completed_on = completed_on - $2::interval, keep_until = keep_until - $2::interval WHERE id = $1`,
    [id, interval],
  );

const exists = async (db: TestDatabase, id: string) => (await db.query(`SELECT 1 FROM pgboss.job WHERE id = $1`, [id])).length === 1;

t.test('pg-boss maintenance deletes completed jobs after a day and keeps dead letters for fourteen', async (t) => {
  const db = await createTestDatabase(t);
  const boss = await startBoss(t, db.url);

  await insertListings(db, 2);
  const completed = await boss.fetch(SYNC, { batchSize: 2 });
  for (const job of completed) await boss.complete(SYNC, job.id);
  const [oldCompleted, recentCompleted] = completed.map((j) => j.id);
  await age(db, oldCompleted!, '25 hours');

  // Dead letters as the worker makes them: a job that fails with no retries left.
  const deadLetters: string[] = [];
  for (const interval of ['2 days', '15 days']) {
    const id = randomUUID();
    await boss.send(SYNC, { table: 'listings', id }, { singletonKey: id, retryLimit: 0 });
    const [job] = await boss.fetch(SYNC);
    await boss.fail(SYNC, job!.id, { error: 'document_parsing_exception' });
    const [dead] = await db.query<{ id: string }>(`SELECT id FROM pgboss.job WHERE name = $1 AND singleton_key = $2`, [DEAD, id]);
    await age(db, dead!.id, interval);
    deadLetters.push(dead!.id);
  }
  const [twoDaysDead, fifteenDaysDead] = deadLetters;

  // A sync job that waited a month (Elasticsearch was down): queued jobs are never swept away.
  const [waitingRow] = await insertListings(db, 1);
  const [waiting] = await db.query<{ id: string }>(`SELECT id FROM pgboss.job WHERE singleton_key = $1`, [waitingRow]);
  await age(db, waiting!.id, '30 days');

  await boss.supervise();

  t.notOk(await exists(db, oldCompleted!), 'a job completed 25 hours ago is gone');
  t.ok(await exists(db, recentCompleted!), 'a job completed just now stays');
  t.ok(await exists(db, twoDaysDead!), 'a dead letter two days old stays');
  t.notOk(await exists(db, fifteenDaysDead!), 'a dead letter fifteen days old is gone');
  t.ok(await exists(db, waiting!.id), 'a sync job waiting for a month stays queued');
});

t.test('COMPLETED_RETENTION_SECONDS and FAILED_RETENTION_SECONDS become the queues\' pg-boss settings', async (t) => {
  const db = await createTestDatabase(t, { env: { COMPLETED_RETENTION_SECONDS: '3600', FAILED_RETENTION_SECONDS: '172800' } });
  const queues = await db.query(`SELECT name, deletion_seconds, retention_seconds FROM pgboss.queue WHERE name LIKE 'search-sync.listings%' ORDER BY name`);
  t.same(queues, [
    { name: SYNC, deletion_seconds: 3600, retention_seconds: 10 * 365 * 86_400 },
    { name: DEAD, deletion_seconds: 172_800, retention_seconds: 172_800 },
  ]);
});
