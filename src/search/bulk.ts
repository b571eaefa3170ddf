import type { Client } from '@elastic/elasticsearch';
import type { estypes } from '@elastic/elasticsearch';

type BulkOperationContainer = estypes.BulkOperationContainer;
type BulkResponseItem = estypes.BulkResponseItem;

/** A row's document as the sync worker read it: present (index it) or gone (delete it). */
export interface SyncDocument {
  id: string;
  version: number;
  source: Record<string, unknown> | null;
}

export type ItemOutcome =
  | { kind: 'done'; result: 'indexed' | 'deleted' | 'not_found' | 'superseded' }
  | { kind: 'retry' | 'dead'; status: number; type: string; reason: string };

/** Item errors that no retry can fix: the document itself is wrong for the index. */
const REJECTED_DOCUMENT = new Set([
  'document_parsing_exception',
  'mapper_parsing_exception',
  'strict_dynamic_mapping_exception',
  'illegal_argument_exception',
]);

/**
 * The operations of one bulk request: each document written to every target index with its
 * external version, so a write older than what an index holds is refused there.
 */
export function bulkOperations(documents: SyncDocument[], targets: string[]): (BulkOperationContainer | Record<string, unknown>)[] {
  const operations: (BulkOperationContainer | Record<string, unknown>)[] = [];
  for (const target of targets) {
    for (const doc of documents) {
      const meta = { _index: target, _id: doc.id, version: doc.version, version_type: 'external' as const };
      if (doc.source) operations.push({ index: meta }, doc.source);
      else operations.push({ delete: meta });
    }
  }
  return operations;
}

export function classifyItem(action: 'index' | 'delete', item: BulkResponseItem): ItemOutcome {
  const status = item.status;
  if (status >= 200 && status < 300) return { kind: 'done', result: action === 'delete' ? 'deleted' : 'indexed' };
  if (action === 'delete' && status === 404) return { kind: 'done', result: 'not_found' };
  const type = item.error?.type ?? 'unknown';
  const reason = item.error?.reason ?? `status ${status}`;
  // Under external versioning a conflict means the index already holds this version or a newer one.
  if (status === 409 && type === 'version_conflict_engine_exception') return { kind: 'done', result: 'superseded' };
  if (status === 429 || status >= 500) return { kind: 'retry', status, type, reason };
  if (status === 400 && REJECTED_DOCUMENT.has(type)) return { kind: 'dead', status, type, reason };
  // A missing index is an operator's problem, not the document's: keep the job until it is fixed.
  if (status === 404 && type === 'index_not_found_exception') return { kind: 'retry', status, type, reason };
  return { kind: 'dead', status, type, reason };
}

/** Combines the outcomes of one document's items across targets: the worst decides. */
export function worstOutcome(outcomes: ItemOutcome[]): ItemOutcome {
  const rank = (o: ItemOutcome) => (o.kind === 'dead' ? 2 : o.kind === 'retry' ? 1 : 0);
  return outcomes.reduce((worst, o) => (rank(o) > rank(worst) ? o : worst));
}

export interface BulkResult {
  /** Outcome per document id, in the order the documents were given. */
  outcomes: Map<string, ItemOutcome>;
  tookMs: number;
}

/**
 * Sends one `_bulk` request and reads every item. client.helpers.bulk is not used: it drops
 * item errors other than 429, waits a fixed 5 s on 429 and gives up on one request error.
 * Request-level errors are thrown for the caller to decide (a 413 splits the batch).
 */
export async function sendBulk(client: Client, documents: SyncDocument[], targets: string[]): Promise<BulkResult> {
  const started = performance.now();
  const response = await client.bulk({ operations: bulkOperations(documents, targets), refresh: false });
  const perDocument = new Map<string, ItemOutcome[]>();
  response.items.forEach((container, i) => {
    const doc = documents[i % documents.length]!;
    const action = container.delete ? 'delete' : 'index';
    const item = (container.delete ?? container.index)!;
    const list = perDocument.get(doc.id) ?? [];
    list.push(classifyItem(action, item));
    perDocument.set(doc.id, list);
  });
  const outcomes = new Map<string, ItemOutcome>();
  for (const doc of documents) {
    const list = perDocument.get(doc.id);
    outcomes.set(doc.id, list ? worstOutcome(list) : { kind: 'retry', status: 0, type: 'missing_item', reason: 'the bulk response had no item for this document' });
  }
  return { outcomes, tookMs: performance.now() - started };
}
