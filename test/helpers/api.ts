import type { LightMyRequestResponse } from 'fastify';
import type { PgBoss } from 'pg-boss';
import type { Test } from 'tap';
import type { RunningService } from '../../src/cli/start.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { startService } from './service.ts';

export const TOKEN = 'test-api-token-0123456789';
export const AUTH = { authorization: `Bearer ${TOKEN}` };

export interface Api {
  db: TestDatabase;
  service: RunningService;
  /** A request through Fastify's inject, with the bearer token unless `headers` says otherwise. */
  call(method: string, url: string, options?: { body?: unknown; headers?: Record<string, string> }): Promise<LightMyRequestResponse>;
}

/** The real service (no Elasticsearch, so no worker claims a job) with API_TOKEN set. */
export async function startApi(t: Test, env: Record<string, string> = {}, db?: TestDatabase): Promise<Api> {
  const database = db ?? (await createTestDatabase(t));
  const service = await startService(t, database, null, { API_TOKEN: TOKEN, ...env });
  return {
    db: database,
    service,
    call: (method, url, { body, headers } = {}) =>
      service.app.inject({
        method: method as 'GET',
        url,
        headers: { ...AUTH, ...headers },
        ...(body === undefined ? {} : { payload: body as object }),
      }),
  };
}

export const json = <T = Record<string, unknown>>(response: LightMyRequestResponse): T => response.json() as T;

/** Listing ids from the seed, which has rows in both tables. */
export async function listingIds(db: TestDatabase, count: number): Promise<string[]> {
  const rows = await db.query<{ id: string }>(`SELECT id::text FROM listings ORDER BY id LIMIT $1`, [count]);
  if (rows.length < count) throw new Error(`the seed has only ${rows.length} listings`);
  return rows.map((r) => r.id);
}

let failedJobs = 0;

/**
 * A search-sync job for `rowId` that pg-boss itself failed for good: sent with no retries left,
 * claimed and failed, so pg-boss also put its copy in the dead-letter queue. Needs a service
 * without Elasticsearch, whose workers claim nothing.
 */
export async function failedSyncJob(boss: PgBoss, rowId: string, error = { status: 400, error: 'document_parsing_exception', reason: 'failed to parse field [price_cents]' }): Promise<string> {
  const queue = 'search-sync.listings';
  // A priority above any job sent before, so the claim below takes this one whatever else waits.
  const id = await boss.send(queue, { table: 'listings', id: rowId }, { singletonKey: rowId, retryLimit: 0, priority: 1_000_000 + ++failedJobs });
  if (!id) throw new Error(`a job for ${rowId} is already waiting`);
  const [job] = await boss.fetch(queue, { batchSize: 1 });
  if (job?.id !== id) throw new Error('another job of the queue was claimed first');
  await boss.fail(queue, id, error);
  return id;
}
