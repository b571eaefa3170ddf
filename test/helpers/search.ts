import { randomBytes } from 'node:crypto';
import type { Test } from 'tap';
import { createSearchClient } from '../../src/search/client.ts';
import { FakeElasticsearch } from './fake-elasticsearch.ts';

/** Where a test's documents land: the in-process fake, or a real Elasticsearch when asked for. */
export interface SearchBackend {
  url: string;
  /** INDEX_PREFIX for the service, so tests sharing a real cluster never meet. */
  prefix: string;
  doc(table: string, id: string): Promise<{ version: number; source: Record<string, unknown> } | undefined>;
  count(table: string): Promise<number>;
}

export async function fakeSearch(t: Test): Promise<{ backend: SearchBackend; fake: FakeElasticsearch }> {
  const fake = await new FakeElasticsearch().start();
  t.teardown(() => fake.stop());
  const backend: SearchBackend = {
    url: fake.url,
    prefix: '',
    doc: async (table, id) => {
      const doc = fake.get(table, id);
      return doc?.source ? { version: doc.version, source: doc.source } : undefined;
    },
    count: async (table) => fake.count(table),
  };
  return { backend, fake };
}

export async function realSearch(t: Test, url: string): Promise<SearchBackend> {
  const prefix = `qs_test_${randomBytes(3).toString('hex')}_`;
  const client = createSearchClient({ url, requestTimeoutMs: 10_000, apiKey: process.env.ELASTICSEARCH_API_KEY, username: process.env.ELASTICSEARCH_USERNAME, password: process.env.ELASTICSEARCH_PASSWORD });
  t.teardown(async () => {
    await client.indices.delete({ index: `${prefix}*`, ignore_unavailable: true }).catch(() => {});
    await client.indices.deleteIndexTemplate({ name: `${prefix}*` }).catch(() => {});
    await client.close();
  });
  return {
    url,
    prefix,
    doc: async (table, id) => {
      try {
        const res = await client.get<Record<string, unknown>>({ index: prefix + table, id });
        return res.found && res._source ? { version: res._version ?? 0, source: res._source } : undefined;
      } catch {
        return undefined;
      }
    },
    count: async (table) => {
      await client.indices.refresh({ index: prefix + table }).catch(() => {});
      return (await client.count({ index: prefix + table })).count;
    },
  };
}
