// Worker faults: processes killed with SIGKILL mid-batch, several processes at once. The service
// runs as its own process here, exactly as `queue-service start` runs.
import t from 'tap';
import { createTestDatabase, eventually, sleep } from '../helpers/database.ts';
import { fakeSearch } from '../helpers/search.ts';
import { spawnService, type ChildService } from '../helpers/service.ts';
import { converge, report, startWriter, syncExistingRows, writtenRows } from './helpers.ts';

// Jobs of a killed worker are retried once they expire; keep that short here.
const SHORT_EXPIRY = { SYNC_EXPIRE_SECONDS: '5', DB_STATEMENT_TIMEOUT_MS: '2000', ELASTICSEARCH_REQUEST_TIMEOUT_MS: '4000' };

async function kill(worker: ChildService): Promise<void> {
  worker.child.kill('SIGKILL');
  await worker.exited;
}

t.test('the worker killed with SIGKILL mid-batch, three times in a row', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t, { env: SHORT_EXPIRY });
  await syncExistingRows(db);
  const writer = startWriter(db);
  const started = Date.now();
  fake.faults.bulkDelayMs = 2000;
  for (let round = 0; round < 3; round++) {
    const worker = spawnService(t, db, fake.url, SHORT_EXPIRY);
    await worker.url;
    await sleep(1500);
    const seen = fake.bulkRequests.length;
    await eventually(async () => fake.bulkRequests.length > seen || undefined, { timeoutMs: 30_000 });
    await kill(worker);
  }
  fake.faults.bulkDelayMs = 0;
  const stats = await writer.stop();
  const faultSeconds = (Date.now() - started) / 1000;
  spawnService(t, db, fake.url, SHORT_EXPIRY);
  const { seconds, last } = await converge(db, fake);
  report(t, { scenario: 'worker killed mid-batch, three times', injected: 'SIGKILL while a bulk request was in flight, x3', faultSeconds: Math.round(faultSeconds), rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});

t.test('two and then three worker processes at once, one of them killed', async (t) => {
  const { fake } = await fakeSearch(t);
  fake.faults.bulkDelayMs = 20;
  const db = await createTestDatabase(t, { env: SHORT_EXPIRY });
  await syncExistingRows(db);
  const writer = startWriter(db, { perSecond: 100 });
  const started = Date.now();
  const workers = [spawnService(t, db, fake.url, SHORT_EXPIRY), spawnService(t, db, fake.url, SHORT_EXPIRY)];
  await Promise.all(workers.map((w) => w.url));
  await sleep(4000);
  workers.push(spawnService(t, db, fake.url, SHORT_EXPIRY));
  await workers[2]!.url;
  await sleep(4000);
  await kill(workers[0]!);
  await sleep(4000);
  const stats = await writer.stop();
  const faultSeconds = (Date.now() - started) / 1000;
  const { seconds, last } = await converge(db, fake);
  t.equal(workers[1]!.child.exitCode, null, 'the survivors keep running');
  report(t, { scenario: 'two, then three worker processes, one killed', injected: '2 then 3 processes on the same queues; SIGKILL one', faultSeconds: Math.round(faultSeconds), rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});
