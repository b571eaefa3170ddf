import { appendFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { Test } from 'tap';
import type { FakeElasticsearch } from '../helpers/fake-elasticsearch.ts';
import type { TestDatabase } from '../helpers/database.ts';
import { sleep } from '../helpers/database.ts';

export interface Divergence {
  rows: number;
  missing: string[];
  stale: string[];
  orphans: string[];
}

/**
 * Every row of the document view against the fake's documents: a document per visible row, with
 * the row's current version and content, and no document without a row.
 */
export async function divergence(db: TestDatabase, fake: FakeElasticsearch, table = 'listings'): Promise<Divergence> {
  const rows = await db.query<{ id: string; version: number; source: Record<string, unknown> }>(
    `SELECT d.id::text AS id, COALESCE(v.version, 0) AS version, to_jsonb(d) AS source
     FROM queue.${table}_document d LEFT JOIN queue.${table}_version v ON v.id = d.id`,
  );
  const docs = fake.documents(table);
  const missing: string[] = [];
  const stale: string[] = [];
  for (const row of rows) {
    const doc = docs.get(row.id);
    if (!doc) missing.push(row.id);
    else if (doc.version !== row.version || !isDeepStrictEqual(doc.source, row.source)) stale.push(row.id);
  }
  const ids = new Set(rows.map((r) => r.id));
  const orphans = [...docs.keys()].filter((id) => !ids.has(id));
  return { rows: rows.length, missing, stale, orphans };
}

/** The seed rows predate the triggers: give them jobs, as `reindex` would, so the index can equal the table. */
export async function syncExistingRows(db: TestDatabase): Promise<void> {
  await db.query(`SELECT queue.enqueue_sync('listings', ARRAY(SELECT id::text FROM listings))`);
}

/** Waits until the index equals the database; returns how long that took. */
export async function converge(db: TestDatabase, fake: FakeElasticsearch, timeoutMs = 120_000): Promise<{ seconds: number; last: Divergence }> {
  const started = Date.now();
  for (;;) {
    const last = await divergence(db, fake);
    if (last.missing.length + last.stale.length + last.orphans.length === 0) return { seconds: (Date.now() - started) / 1000, last };
    if (Date.now() - started > timeoutMs) return { seconds: NaN, last };
    await sleep(200);
  }
}

export interface WriterStats {
  inserted: number;
  updated: number;
  deleted: number;
  failed: number;
}

/**
 * An app writing while the fault happens: inserts, updates of recent rows and some deletes, one
 * statement at a time. Writes that fail (the database is restarting) are counted, not retried:
 * they never committed, so nothing of them should reach the index.
 */
export function startWriter(db: TestDatabase, { perSecond = 50 } = {}) {
  const stats: WriterStats = { inserted: 0, updated: 0, deleted: 0, failed: 0 };
  let running = true;
  const loop = (async () => {
    let i = 0;
    while (running) {
      const started = Date.now();
      try {
        const kind = i % 10;
        if (kind < 6) {
          await db.query(`INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), $1, $2)`, [`written ${i}`, i]);
          stats.inserted++;
        } else if (kind < 9) {
          const r = await db.query(`UPDATE listings SET price_cents = price_cents + 1, title = $1 WHERE id = (SELECT id FROM listings ORDER BY created_at DESC LIMIT 1 OFFSET $2)`, [`updated ${i}`, i % 7]);
          if (r.length >= 0) stats.updated++;
        } else {
          await db.query(`DELETE FROM listings WHERE id = (SELECT id FROM listings ORDER BY created_at DESC LIMIT 1 OFFSET 3)`);
          stats.deleted++;
        }
      } catch {
        stats.failed++;
      }
      i++;
      const wait = 1000 / perSecond - (Date.now() - started);
      if (wait > 0) await sleep(wait);
    }
  })();
  return {
    stats,
    async stop(): Promise<WriterStats> {
      running = false;
      await loop;
      return stats;
    },
  };
}

export interface FaultResult {
  scenario: string;
  injected: string;
  faultSeconds: number;
  rowsWritten: number;
  lost: number;
  stale: number;
  convergeSeconds: number;
}

/** Asserts convergence and records the scenario's figures (FAULTS_REPORT=file appends JSON lines). */
export function report(t: Test, scenario: Omit<FaultResult, 'lost' | 'stale'>, last: Divergence): void {
  const result: FaultResult = { ...scenario, lost: last.missing.length + last.orphans.length, stale: last.stale.length };
  t.same({ missing: last.missing.length, stale: last.stale.length, orphans: last.orphans.length }, { missing: 0, stale: 0, orphans: 0 }, 'the index equals the database: nothing lost, nothing stale');
  t.comment(`result ${JSON.stringify(result)}`);
  if (process.env.FAULTS_REPORT) appendFileSync(process.env.FAULTS_REPORT, JSON.stringify(result) + '\n');
}

export function writtenRows(stats: WriterStats): number {
  return stats.inserted + stats.updated + stats.deleted;
}
