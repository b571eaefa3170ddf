// The `external-api` queue: one call to the partner API at EXTERNAL_API_URL per job, within the
// queue's rate limit (shared by every worker of every process; see QUEUE_OVERRIDES to change it).
// A job names a path below EXTERNAL_API_URL, never a host, and cannot set headers: the token is
// the service's. 2xx completes with the answer; 408, 429, 5xx, timeouts and network errors retry;
// any other 4xx cannot succeed by repeating it and is dead-lettered at once.
import { EXTERNAL_API_QUEUE, type ExternalApiPayload } from '../../config/task-queues.ts';
import { defineHandler, notRetryable, retryable } from '../handler.ts';

const MAX_BODY_CHARS = 4096;

export function callUrl(base: string, payload: ExternalApiPayload): URL {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/$/, '')}${payload.path.split('?')[0]}`;
  for (const [key, value] of Object.entries(payload.query ?? {})) url.searchParams.set(key, value);
  return url;
}

export default defineHandler(EXTERNAL_API_QUEUE, {
  unavailable: (env) => (env.externalApiUrl ? null : 'EXTERNAL_API_URL is not set: external-api jobs wait until it is'),

  start({ env }) {
    const base = new URL(env.externalApiUrl!);
    return {
      async run(payload) {
        const url = callUrl(base.href, payload);
        const call = `${payload.method} ${url.pathname}`;
        if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname.replace(/\/?$/, '/'))) throw notRetryable('invalid_path', `${payload.path} leaves EXTERNAL_API_URL`);
        const headers: Record<string, string> = { accept: 'application/json' };
        if (env.externalApiToken) headers.authorization = `Bearer ${env.externalApiToken}`;
        if (payload.idempotencyKey) headers['idempotency-key'] = payload.idempotencyKey;
        if (payload.body !== undefined) headers['content-type'] = 'application/json';
        let response: Response;
        try {
          response = await fetch(url, {
            method: payload.method,
            headers,
            ...(payload.body !== undefined ? { body: JSON.stringify(payload.body) } : {}),
            signal: AbortSignal.timeout(env.externalApiTimeoutMs),
          });
        } catch (err) {
          const cause = (err as Error).name === 'TimeoutError' ? `no answer within ${env.externalApiTimeoutMs} ms` : (err as Error).message;
          throw retryable('request_failed', `${call}: ${cause}`);
        }
        const text = (await response.text()).slice(0, MAX_BODY_CHARS);
        let body: unknown = text;
        try {
          body = text ? JSON.parse(text) : null;
        } catch {
          // not JSON: kept as text
        }
        const detail = { status: response.status, body };
        if (response.ok) return detail;
        const again = response.status === 408 || response.status === 429 || response.status >= 500;
        const message = `${call} answered ${response.status}`;
        throw again ? retryable('http_status', message, detail) : notRetryable('http_status', message, detail);
      },
    };
  },
});
