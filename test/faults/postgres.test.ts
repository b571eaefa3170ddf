// PostgreSQL faults, on a server of the test's own so the other tests never notice: a restart
// under the worker, and a server whose connections are nearly all taken.
import pg from 'pg';
import t from 'tap';
import { createTestDatabase, sleep } from '../helpers/database.ts';
import { startPrivatePostgres } from '../helpers/private-postgres.ts';
import { fakeSearch } from '../helpers/search.ts';
import { spawnService } from '../helpers/service.ts';
import { converge, report, startWriter, syncExistingRows, writtenRows } from './helpers.ts';

const SHORT_EXPIRY = { SYNC_EXPIRE_SECONDS: '5', DB_STATEMENT_TIMEOUT_MS: '2000', ELASTICSEARCH_REQUEST_TIMEOUT_MS: '4000' };

t.test('PostgreSQL restarted under the worker: it reconnects by itself and the process keeps running', async (t) => {
  const server = await startPrivatePostgres(t);
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t, { server: server.url, env: SHORT_EXPIRY });
  await syncExistingRows(db);
  const worker = spawnService(t, db, fake.url, SHORT_EXPIRY);
  await worker.url;
  const writer = startWriter(db);
  await sleep(2000);
  const started = Date.now();
  for (let round = 0; round < 2; round++) {
    server.stop();
    await sleep(3000);
    server.start();
    await sleep(2000);
  }
  const faultSeconds = (Date.now() - started) / 1000;
  await sleep(2000);
  const stats = await writer.stop();
  const { seconds, last } = await converge(db, fake);
  t.equal(worker.child.exitCode, null, 'the service process did not crash');
  t.ok(stats.failed > 0, `${stats.failed} app writes failed while the server was down (they never committed)`);
  report(t, { scenario: 'PostgreSQL restarted under the worker', injected: 'pg_ctl stop (fast), 3 s down, start; twice', faultSeconds: Math.round(faultSeconds), rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});

t.test('connection limit reached: other clients hold almost every connection', async (t) => {
  const server = await startPrivatePostgres(t, { maxConnections: 30 });
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t, { server: server.url, env: SHORT_EXPIRY });
  await syncExistingRows(db);
  const worker = spawnService(t, db, fake.url, SHORT_EXPIRY);
  await worker.url;
  const writer = startWriter(db);
  await sleep(1000);
  // Take every connection the server will still give, leaving the service only what it held.
  const hogs: pg.Client[] = [];
  const started = Date.now();
  for (;;) {
    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => {});
    try {
      await client.connect();
      hogs.push(client);
    } catch {
      break;
    }
  }
  await sleep(8000);
  await Promise.all(hogs.map((c) => c.end()));
  const faultSeconds = (Date.now() - started) / 1000;
  const stats = await writer.stop();
  const { seconds, last } = await converge(db, fake);
  t.ok(hogs.length > 0, `${hogs.length} connections held`);
  t.equal(worker.child.exitCode, null, 'the service process did not crash');
  report(t, { scenario: 'connection limit reached', injected: `every free connection taken (${hogs.length} of 30)`, faultSeconds: Math.round(faultSeconds), rowsWritten: writtenRows(stats), convergeSeconds: seconds }, last);
});
