import { Client, errors } from '@elastic/elasticsearch';
import type { Env } from '../config/env.ts';

export type SearchClient = Client;
export { errors as searchErrors };

export interface SearchClientOptions {
  url: string;
  apiKey?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  requestTimeoutMs: number;
}

/**
 * One client for the process. The 9.x client has no request timeout of its own, so every request
 * gets ours; and it retries nothing itself, because a failed bulk is retried as jobs, with backoff,
 * where the retry is counted and visible.
 */
export function createSearchClient(options: SearchClientOptions): Client {
  const auth = options.apiKey
    ? { apiKey: options.apiKey }
    : options.username
      ? { username: options.username, password: options.password ?? '' }
      : undefined;
  return new Client({
    node: options.url,
    ...(auth ? { auth } : {}),
    requestTimeout: options.requestTimeoutMs,
    maxRetries: 0,
    name: 'queue-service',
  });
}

/** The client ELASTICSEARCH_* describe, or null when ELASTICSEARCH_URL is unset. */
export function searchClientFromEnv(env: Env): Client | null {
  if (!env.elasticsearchUrl) return null;
  return createSearchClient({
    url: env.elasticsearchUrl,
    apiKey: env.elasticsearchApiKey,
    username: env.elasticsearchUsername,
    password: env.elasticsearchPassword,
    requestTimeoutMs: env.elasticsearchRequestTimeoutMs,
  });
}

/** A one-line, secret-free description of why a request failed. */
export function describeSearchError(err: unknown): string {
  if (err instanceof errors.ResponseError) {
    const body = err.body as { error?: { type?: string; reason?: string } | string } | undefined;
    const detail = typeof body?.error === 'object' ? `${body.error.type}: ${body.error.reason}` : String(body?.error ?? err.message);
    return `HTTP ${err.statusCode}: ${detail}`;
  }
  if (err instanceof errors.TimeoutError) return 'request timed out';
  if (err instanceof errors.ConnectionError) return `cannot connect: ${err.message}`;
  if (err instanceof errors.ProductNotSupportedError) return 'the server is not Elasticsearch';
  return err instanceof Error ? err.message : String(err);
}

export function statusOf(err: unknown): number | undefined {
  return err instanceof errors.ResponseError ? err.statusCode : undefined;
}
