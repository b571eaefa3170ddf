import type { Client } from '@elastic/elasticsearch';
import type { IndexMappings } from '../config/queues.ts';
import { statusOf } from './client.ts';

export interface IndexSpec {
  /** The alias searches and writes go through, e.g. `listings` (with INDEX_PREFIX). */
  alias: string;
  mappings: IndexMappings;
}

/**
 * Deletes are kept as versioned tombstones for this long, so a stale write that arrives after a
 * delete is still refused (Elasticsearch's default is 60 s). The sync worker never sends a batch
 * whose documents were read longer ago than a small fraction of this.
 */
export const GC_DELETES = '1h';

export const templateName = (alias: string) => `${alias}-template`;
export const versionedIndex = (alias: string, version: number) => `${alias}_v${version}`;

export function indexTemplate(spec: IndexSpec) {
  return {
    name: templateName(spec.alias),
    index_patterns: [`${spec.alias}_v*`],
    priority: 200,
    template: {
      settings: { 'index.gc_deletes': GC_DELETES },
      mappings: spec.mappings,
    },
    _meta: { managed_by: 'queue-service' },
  };
}

export type IndexLayout =
  /** The alias exists and points at these indices (one, or two during a rebuild). */
  | { kind: 'alias'; indices: string[] }
  /** A concrete index carries the alias's name: the layout older sync code left behind. */
  | { kind: 'index' }
  | { kind: 'missing' };

export async function readLayout(client: Client, alias: string): Promise<IndexLayout> {
  try {
    const aliases = await client.indices.getAlias({ name: alias });
    return { kind: 'alias', indices: Object.keys(aliases).sort() };
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  return (await client.indices.exists({ index: alias })) ? { kind: 'index' } : { kind: 'missing' };
}

/**
 * Creates what is missing (template, first versioned index, alias) and never touches an existing
 * index or its data. The template is always brought up to date: it only shapes indices created
 * after it. Returns the indices the alias points at.
 */
export async function ensureIndex(client: Client, spec: IndexSpec): Promise<IndexLayout> {
  await client.indices.putIndexTemplate(indexTemplate(spec));
  const layout = await readLayout(client, spec.alias);
  if (layout.kind !== 'missing') return layout;
  const index = versionedIndex(spec.alias, 1);
  try {
    await client.indices.create({ index, aliases: { [spec.alias]: {} } });
  } catch (err) {
    if (statusOf(err) !== 400) throw err;
    // Another container created it first, or the index outlived its alias: point the alias at it.
    await client.indices.putAlias({ index, name: spec.alias });
  }
  return readLayout(client, spec.alias);
}
