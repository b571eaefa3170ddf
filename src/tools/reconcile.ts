import type { estypes } from '@elastic/elasticsearch';
import type { Logger } from '../config/logger.ts';
import { indexAlias, type SyncTable } from '../config/queues.ts';
import type { Pool } from '../db/pool.ts';
import { describeSearchError, type SearchClient } from '../search/client.ts';
import { readLayout } from '../search/indices.ts';
import { keyValidator } from '../sync/job-data.ts';
import { ToolError } from './errors.ts';
import * as plans from './plans.ts';
import type { Progress } from './progress.ts';
import { databaseNow, tableShape } from './tables.ts';

export interface ReconcileDeps {
  pool: Pool;
  search: SearchClient;
  log: Logger;
  progress: Progress;
  /** Aborted (shutdown, Ctrl-C): stop after the chunk in flight; the report says so. */
  signal?: AbortSignal;
}

export interface ReconcileOptions {
  alias: string;
  repair: boolean;
  /** Rows (and documents) compared per round trip; nothing more is held in memory. */
  chunkSize: number;
  sampleSize?: number;
}

export interface DriftKind {
  count: number;
  /** The first ids found, for an operator to look at. */
  sample: string[];
}

export interface ReconcileReport {
  table: string;
  alias: string;
  startedAt: Date;
  /** Rows of the document view compared. */
  rows: number;
  /** Documents of the index compared. */
  documents: number;
  /** Rows with no document. */
  missing: DriftKind;
  /** Documents whose version is not their row's (older, or newer than the database issued). */
  stale: DriftKind;
  /** Documents with no row in the document view. */
  orphaned: DriftKind;
  /** Of the stale documents, those whose version is newer than the row's (a restored database). */
  ahead: number;
  /** Ids whose sync was waiting or ran during the check: not drift, not counted as drift. */
  inFlight: number;
  /** Jobs enqueued by --repair, plus orphans deleted directly (ids that are no key of the table). */
  repaired: number;
  interrupted: boolean;
}

export const driftCount = (r: ReconcileReport) => r.missing.count + r.stale.count + r.orphaned.count;

const SAMPLE_SIZE = 10;

interface Drifted {
  id: string;
  /** The version the index holds for it (0 when it holds none). */
  indexVersion: number;
}

type RecheckRow = { id: string; present: boolean; version: number; in_flight: boolean };

/**
 * Compares one table's document view with its index, both ways, a chunk at a time: rows in key
 * order against the index (missing and stale documents), then the index in `id` order against
 * the view (orphans). Sorting on `_id` is refused by Elasticsearch; `id` is a keyword in every
 * mapping for this. Anything that looks drifted is read again from the database after the index
 * was read, and ids whose sync was waiting or ran since the check started are left out: they are
 * catching up, not drifted. With `repair`, each chunk's drifted ids are enqueued as it goes.
 */
export async function reconcileTable(deps: ReconcileDeps, shape: plans.TableShape, options: ReconcileOptions): Promise<ReconcileReport> {
  const { pool, search } = deps;
  const { alias } = options;
  const layout = await readLayout(search, alias);
  if (layout.kind === 'missing') throw new ToolError(`the index alias ${alias} does not exist; start the service once (it creates the index), then reconcile`);
  if (layout.kind === 'alias' && layout.indices.length !== 1) {
    throw new ToolError(`the alias ${alias} points at ${layout.indices.length} indices (${layout.indices.join(', ')}); point it at one first`);
  }
  const validateKey = keyValidator(shape.keyType);
  if (!validateKey) throw new ToolError(`${shape.table.table} has a primary key of type ${shape.keyType}; sync supports uuid, integer and text keys`);

  const startedAt = await databaseNow(pool);
  // Documents indexed before this are visible to search from here on; later ones are in flight.
  await search.indices.refresh({ index: alias });
  const run = new Run(deps, shape, options, startedAt, (id) => validateKey(id) === null);
  await run.rowsAgainstIndex();
  await run.indexAgainstRows();
  return run.report;
}

class Run {
  readonly report: ReconcileReport;
  readonly #deps: ReconcileDeps;
  readonly #shape: plans.TableShape;
  readonly #options: ReconcileOptions;
  readonly #isKey: (id: string) => boolean;
  readonly #sampleSize: number;

  constructor(deps: ReconcileDeps, shape: plans.TableShape, options: ReconcileOptions, startedAt: Date, isKey: (id: string) => boolean) {
    this.#deps = deps;
    this.#shape = shape;
    this.#options = options;
    this.#isKey = isKey;
    this.#sampleSize = options.sampleSize ?? SAMPLE_SIZE;
    const kind = (): DriftKind => ({ count: 0, sample: [] });
    this.report = {
      table: shape.table.table,
      alias: options.alias,
      startedAt,
      rows: 0,
      documents: 0,
      missing: kind(),
      stale: kind(),
      orphaned: kind(),
      ahead: 0,
      inFlight: 0,
      repaired: 0,
      interrupted: false,
    };
  }

  /** Pass 1: every row of the view, in key order, against what the index holds for its id. */
  async rowsAgainstIndex(): Promise<void> {
    const { pool, search, progress } = this.#deps;
    const { chunkSize, alias } = this.#options;
    const total = (await pool.query<{ n: number }>(plans.countDocuments(this.#shape))).rows[0]?.n ?? 0;
    progress.start(`reconcile ${this.report.table}: rows`, total);
    const firstPage = plans.documentVersions(this.#shape, true);
    const nextPage = plans.documentVersions(this.#shape, false);
    let after: string | null = null;
    while (!this.#stopped()) {
      const page: plans.Statement = after === null ? firstPage : nextPage;
      const values: unknown[] = after === null ? [chunkSize] : [chunkSize, after];
      const { rows } = await pool.query<{ id: string; version: number }>({ ...page, values });
      if (rows.length === 0) break;
      const ids: string[] = rows.map((r) => r.id);
      const indexed = await search.search({ index: alias, query: { ids: { values: ids } }, size: ids.length, _source: false, version: true, track_total_hits: false });
      const versions = new Map(indexed.hits.hits.map((hit) => [hit._id!, hit._version ?? 0]));
      const candidates = rows.filter((r) => versions.get(r.id) !== r.version).map((r) => r.id);
      const drifted: Drifted[] = [];
      for (const row of await this.#recheck(candidates)) {
        if (!row.present) continue; // deleted since: its document is the second pass's business
        const indexVersion = versions.get(row.id);
        if (indexVersion === undefined) this.#count('missing', row.id);
        else if (indexVersion !== row.version) {
          this.#count('stale', row.id);
          if (indexVersion > row.version) this.report.ahead++;
        } else continue; // caught up between the two reads
        drifted.push({ id: row.id, indexVersion: indexVersion ?? 0 });
      }
      await this.#repair(drifted, []);
      this.report.rows += rows.length;
      progress.update(this.report.rows);
      after = ids.at(-1)!;
      if (rows.length < chunkSize) break;
    }
    progress.finish({ rows: this.report.rows });
  }

  /** Pass 2: every document of the index, in `id` order, against the view. */
  async indexAgainstRows(): Promise<void> {
    const { pool, search, progress } = this.#deps;
    const { chunkSize, alias } = this.#options;
    const total = (await search.count({ index: alias })).count;
    progress.start(`reconcile ${this.report.table}: documents`, total);
    let searchAfter: estypes.SortResults | undefined;
    while (!this.#stopped()) {
      const page = await search.search({
        index: alias,
        size: chunkSize,
        _source: false,
        version: true,
        sort: [{ id: { order: 'asc' } }],
        track_total_hits: false,
        ...(searchAfter ? { search_after: searchAfter } : {}),
      });
      const hits = page.hits.hits;
      if (hits.length === 0) break;
      const versions = new Map(hits.map((hit) => [hit._id!, hit._version ?? 0]));
      const keys = [...versions.keys()].filter(this.#isKey);
      const notKeys = [...versions.keys()].filter((id) => !this.#isKey(id));
      const present = new Set((await pool.query<{ id: string }>({ ...plans.presentIds(this.#shape), values: [keys] })).rows.map((r) => r.id));
      const orphans: Drifted[] = [];
      for (const row of await this.#recheck(keys.filter((id) => !present.has(id)))) {
        if (row.present) continue; // inserted since
        this.#count('orphaned', row.id);
        orphans.push({ id: row.id, indexVersion: versions.get(row.id) ?? 0 });
      }
      for (const id of notKeys) this.#count('orphaned', id);
      await this.#repair(orphans, notKeys);
      this.report.documents += hits.length;
      progress.update(this.report.documents);
      searchAfter = hits.at(-1)!.sort;
      if (hits.length < chunkSize) break;
    }
    progress.finish({ documents: this.report.documents });
  }

  #stopped(): boolean {
    if (this.#deps.signal?.aborted) this.report.interrupted = true;
    return this.report.interrupted;
  }

  /** Reads drift candidates again, after the index; those with a sync in flight are set aside. */
  async #recheck(ids: string[]): Promise<RecheckRow[]> {
    if (ids.length === 0) return [];
    const { rows } = await this.#deps.pool.query<RecheckRow>({
      ...plans.recheck(this.#shape),
      values: [ids, this.#shape.table.queue, this.report.startedAt],
    });
    const settled = rows.filter((r) => !r.in_flight);
    this.report.inFlight += rows.length - settled.length;
    return settled;
  }

  #count(kind: 'missing' | 'stale' | 'orphaned', id: string): void {
    const entry = this.report[kind];
    entry.count++;
    if (entry.sample.length < this.#sampleSize) entry.sample.push(id);
  }

  /**
   * Enqueues the drifted ids with new versions: above the row's, and above whatever the index
   * holds (a tombstone of a document deleted by hand, a version from a database since restored),
   * or Elasticsearch would refuse the fix as older. An orphan gets a tombstone version and its job
   * deletes the document. Documents whose id can never be a row's key are deleted directly.
   */
  async #repair(drifted: Drifted[], notKeys: string[]): Promise<void> {
    if (!this.#options.repair) return;
    const { pool, search, log } = this.#deps;
    if (drifted.length > 0) {
      const highest = Math.max(...drifted.map((d) => d.indexVersion));
      if (highest > 0) await pool.query({ ...plans.advanceDocumentVersion, values: [highest] });
      const ids = drifted.map((d) => d.id);
      await pool.query({ ...plans.resync, values: [`${this.#shape.table.schema}.${this.#shape.table.table}`, ids, true] });
      this.report.repaired += ids.length;
    }
    if (notKeys.length > 0) {
      const response = await search.bulk({ operations: notKeys.map((id) => ({ delete: { _index: this.#options.alias, _id: id } })) });
      const failed = response.items.filter((item) => (item.delete?.status ?? 500) >= 300 && item.delete?.status !== 404);
      if (failed.length > 0) log.warn({ alias: this.#options.alias, failed: failed.length }, 'could not delete some orphan documents whose ids are no key');
      this.report.repaired += notKeys.length - failed.length;
    }
  }
}

export interface RunRecord {
  source: 'cli' | 'schedule';
  repair: boolean;
}

type RunOutcome = { report: ReconcileReport } | { table: string; startedAt: Date; error: string };

/** Stores a run's outcome in queue.reconcile_runs (and prunes old runs). */
export async function recordReconcileRun(pool: Pool, record: RunRecord, outcome: RunOutcome): Promise<void> {
  await pool.query({ ...plans.recordReconcileRun, values: runRow(record, outcome) });
  await pool.query(plans.pruneReconcileRuns);
}

function runRow(record: RunRecord, outcome: RunOutcome): unknown[] {
  const head = [record.source, record.repair];
  if (!('report' in outcome)) return [outcome.table, ...head, 'error', outcome.startedAt, 0, 0, 0, 0, 0, 0, 0, {}, outcome.error];
  const r = outcome.report;
  const sample = { missing: r.missing.sample, stale: r.stale.sample, orphaned: r.orphaned.sample };
  const error = r.interrupted ? 'interrupted before the end: the counts cover the part checked' : null;
  return [r.table, ...head, driftCount(r) > 0 ? 'drift' : 'clean', r.startedAt, r.rows, r.documents, r.missing.count, r.stale.count, r.orphaned.count, r.inFlight, r.repaired, sample, error];
}

/** One pino line per table, at warn when it found drift. */
export function logReport(log: Logger, report: ReconcileReport, repair: boolean): void {
  const line = {
    table: report.table,
    rows: report.rows,
    documents: report.documents,
    missing: report.missing.count,
    stale: report.stale.count,
    orphaned: report.orphaned.count,
    inFlight: report.inFlight,
    repaired: report.repaired,
    sample: { missing: report.missing.sample, stale: report.stale.sample, orphaned: report.orphaned.sample },
  };
  if (driftCount(report) === 0) log.info(line, 'reconcile: index matches the database');
  else log.warn(line, repair ? 'reconcile: drift found and repair enqueued' : 'reconcile: drift found');
}

export interface TableOutcome {
  table: string;
  report?: ReconcileReport;
  /** Why this table could not be reconciled (the others still were). */
  error?: string;
}

export interface RunOptions extends RunRecord {
  indexPrefix: string;
  chunkSize: number;
}

/** Reconciles each table in turn, records and logs each outcome; one table failing does not stop the rest. */
export async function runReconcile(deps: ReconcileDeps, tables: SyncTable[], options: RunOptions): Promise<TableOutcome[]> {
  const outcomes: TableOutcome[] = [];
  for (const table of tables) {
    if (deps.signal?.aborted) break;
    const startedAt = new Date();
    try {
      const shape = await tableShape(deps.pool, table);
      const report = await reconcileTable(deps, shape, { alias: indexAlias(options.indexPrefix, table), repair: options.repair, chunkSize: options.chunkSize });
      await recordReconcileRun(deps.pool, options, { report });
      logReport(deps.log, report, options.repair);
      outcomes.push({ table: table.table, report });
    } catch (err) {
      const error = err instanceof ToolError ? err.message : describeSearchError(err);
      deps.log.error({ table: table.table, err: error }, 'reconcile failed');
      await recordReconcileRun(deps.pool, options, { table: table.table, startedAt, error }).catch((recordErr: Error) =>
        deps.log.warn({ err: recordErr.message }, 'could not record the failed reconcile run'),
      );
      outcomes.push({ table: table.table, error });
    }
  }
  return outcomes;
}
