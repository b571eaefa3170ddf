import type { Test } from 'tap';
import { createLogger } from '../../src/config/logger.ts';
import { findSyncTable } from '../../src/config/queues.ts';
import { createSearchClient, type SearchClient } from '../../src/search/client.ts';
import type { TableShape } from '../../src/tools/plans.ts';
import { silentProgress, type Progress } from '../../src/tools/progress.ts';
import { tableShape } from '../../src/tools/tables.ts';
import { insertListings, waitForIdleQueue } from '../sync-scenarios.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import type { FakeElasticsearch } from './fake-elasticsearch.ts';
import { fakeSearch } from './search.ts';
import { startService } from './service.ts';

/** What the tools run with in a test: the test database's pool, a client of the given search URL. */
export function toolDeps(t: Test, db: TestDatabase, searchUrl: string, progress: Progress = silentProgress) {
  const search: SearchClient = createSearchClient({ url: searchUrl, requestTimeoutMs: 5000 });
  t.teardown(() => search.close());
  return { pool: db.pool, search, log: createLogger('silent'), progress };
}

export const shapeOf = (db: TestDatabase, table: string): Promise<TableShape> => tableShape(db.pool, findSyncTable(table)!);

/** A progress that calls back on every update, to stop a tool at a chosen point. */
export function progressHook(onUpdate: (done: number) => void): Progress {
  return { start() {}, update: onUpdate, finish() {} };
}

/**
 * A running service with `count` listings synced into the fake, and nothing else in the table
 * (the sample rows are older than the triggers, so they were never indexed): index and table agree.
 */
export async function syncedListings(t: Test, count: number, env: Record<string, string> = {}): Promise<{ fake: FakeElasticsearch; db: TestDatabase; ids: string[] }> {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  await startService(t, db, fake.url, env);
  await db.query(`DELETE FROM listings`);
  const ids = await insertListings(db, count, 'synced');
  await waitForIdleQueue(db);
  return { fake, db, ids };
}
