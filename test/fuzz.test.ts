// Malformed input never gets a 5xx: every route receives generated bad paths, query strings,
// bodies and headers, and must answer below 500 with a message saying what was wrong. The
// generator is seeded (FUZZ_SEED to repeat a run); each failure prints the request that caused it.
import t from 'tap';
import { TOKEN, startApi } from './helpers/api.ts';

const REQUESTS_PER_ROUTE = Number(process.env.FUZZ_REQUESTS ?? 500);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);

/** mulberry32: small, fast and good enough to pick mutations. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(SEED);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
const chance = (p: number) => random() < p;

const UUID = '3f1c2b7e-9a4d-4e8f-b1c6-5d2a7e9f0b13';
const QUEUES = ['search-sync.listings', 'search-sync.listings.dead', 'search-sync.inventory_items', 'nope', '', 'SEARCH-SYNC.LISTINGS'];

function junkString(): string {
  switch (int(9)) {
    case 0: return '';
    case 1: return 'x'.repeat(1 + int(20_000));
    case 2: return '\u0000\u0001\u001f';
    case 3: return '😀ünï©ødé\u202e';
    case 4: return "'; DROP TABLE listings; --";
    case 5: return '<script>alert(1)</script>';
    case 6: return UUID.toUpperCase().replace('-', '');
    case 7: return String(random() * 1e20);
    default: return Math.random().toString(36).slice(2);
  }
}

function junkValue(depth = 0): unknown {
  switch (int(depth > 3 ? 6 : 9)) {
    case 0: return null;
    case 1: return chance(0.5);
    case 2: return pick([0, -1, 1.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, 2 ** 31]);
    case 3: return junkString();
    case 4: return UUID;
    case 5: return pick(QUEUES);
    case 6: return Array.from({ length: int(5) }, () => junkValue(depth + 1));
    case 7: return Object.fromEntries(Array.from({ length: int(5) }, () => [pick(['queue', 'data', 'options', 'ids', 'token', 'id', 'table', 'priority', 'startAfter', 'retryLimit', 'singletonKey', '__proto__', 'constructor', junkString().slice(0, 30)]), junkValue(depth + 1)]));
    default: return { queue: pick(QUEUES), data: junkValue(depth + 1), options: junkValue(depth + 1), ids: junkValue(depth + 1) };
  }
}

function junkPathSegment(): string {
  return pick(['', '%', '%zz', '%00', '%2e%2e', '..', 'not-a-uuid', UUID, UUID.slice(0, 35), `${UUID}0`, encodeURIComponent(junkString().slice(0, 200)), '0', '-1', 'null', '%E0%A4%A']);
}

function junkQuery(): string {
  const keys = ['queue', 'state', 'limit', 'cursor', 'minutes', 'page', 'state[]', '__proto__', junkString().slice(0, 20)];
  const values = () => pick(['', '-1', '0', '1e99', 'NaN', '501', 'created', 'failed', 'sleeping', pick(QUEUES), Buffer.from(junkString().slice(0, 100)).toString('base64url'), encodeURIComponent(junkString().slice(0, 100)), '%', '%zz']);
  return Array.from({ length: 1 + int(4) }, () => `${encodeURIComponent(pick(keys))}=${values()}`).join('&');
}

interface Mutation {
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
  describe: string;
}

function mutate(method: string, template: string): Mutation {
  let url = template.replace(':id', () => (chance(0.7) ? junkPathSegment() : UUID));
  if (chance(0.15)) url += pick(['/', '//', `/${junkPathSegment()}`, '/..', '%2F']);
  if (chance(0.5)) url += `?${junkQuery()}`;

  const headers: Record<string, string> = {};
  const auth = int(6);
  if (auth <= 2) headers.authorization = `Bearer ${TOKEN}`;
  else if (auth === 3) headers.authorization = pick([`Bearer ${TOKEN}x`, 'Bearer', 'Basic Zm9vOmJhcg==', `bearer  ${TOKEN}`, 'Bearer \t', TOKEN, '']);
  else if (auth === 4) headers.cookie = pick(['qs_session=', 'qs_session=v1.9999999999.abc.def', 'qs_session=v1.1.a.b', `qs_session=${junkString().replace(/[^\x21-\x7e]/g, '').slice(0, 500)}`, 'a=b; qs_session', '=;=;=']);
  if (chance(0.2)) headers['x-csrf-token'] = junkString().replace(/[^\x21-\x7e]/g, '').slice(0, 200);
  if (chance(0.2)) headers.accept = pick(['*/*', 'text/html', 'application/xml', 'image/png;q=0.5', ',,,', '']);

  let payload: string | Buffer | undefined;
  if (method !== 'GET' && method !== 'DELETE' && chance(0.9)) {
    const kind = int(8);
    if (kind <= 3) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(junkValue());
    } else if (kind === 4) {
      headers['content-type'] = 'application/json';
      payload = pick(['{', '{"queue":', '[1,2', 'null', '', '\u0000', '{"a":1}}', 'undefined', 'NaN']);
    } else if (kind === 5) {
      headers['content-type'] = pick(['text/plain', 'application/xml', 'multipart/form-data', 'application/octet-stream', 'application/json; charset=latin-99', 'application/x-www-form-urlencoded', 'foo']);
      payload = pick([JSON.stringify(junkValue()), 'token=', 'token=%zz', `token=${'a'.repeat(5000)}`, '<xml/>', junkString()]);
    } else if (kind === 6) {
      headers['content-type'] = 'application/json';
      payload = Buffer.alloc(1_100_000, 'a'); // past the body limit
    } else {
      headers['content-type'] = 'application/json';
      headers['content-encoding'] = pick(['gzip', 'br', 'identity', 'bogus']);
      payload = JSON.stringify(junkValue());
    }
  }
  const describe = `${method} ${url.slice(0, 300)} headers=${JSON.stringify(headers).slice(0, 300)} body=${String(payload ?? '').slice(0, 300)}`;
  return { url, headers, payload, describe };
}

/** A non-empty message: the error's JSON `message`, or the sign-in page's visible message. */
function messageOf(body: string, contentType: string): string {
  if (contentType.includes('text/html')) return /<p id="message" role="alert">([^<]*)<\/p>/.exec(body)?.[1]?.trim() ?? '';
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    return typeof parsed.message === 'string' ? parsed.message.trim() : '';
  } catch {
    return '';
  }
}

function notReadyReasons(body: string): number {
  try {
    const parsed = JSON.parse(body) as { status?: string; reasons?: string[] };
    return parsed.status === 'not_ready' ? (parsed.reasons?.length ?? 0) : 0;
  } catch {
    return 0;
  }
}

const ROUTES: [method: string, path: string][] = [
  ['GET', '/api/v1/queue/stats'],
  ['GET', '/api/v1/queue/throughput'],
  ['GET', '/api/v1/queue/jobs'],
  ['POST', '/api/v1/queue/jobs'],
  ['GET', '/api/v1/queue/jobs/:id'],
  ['PUT', '/api/v1/queue/jobs/:id/retry'],
  ['DELETE', '/api/v1/queue/jobs/:id'],
  ['GET', '/api/v1/queue/dead-letters'],
  ['POST', '/api/v1/queue/dead-letters/replay'],
  ['GET', '/dashboard'],
  ['POST', '/dashboard/sign-in'],
  ['POST', '/dashboard/sign-out'],
  ['GET', '/health'],
  ['GET', '/ready'],
  ['GET', '/metrics'],
  ['GET', '/docs/json'],
];

t.comment(`FUZZ_SEED=${SEED} FUZZ_REQUESTS=${REQUESTS_PER_ROUTE}`);
const api = await startApi(t);

for (const [method, path] of ROUTES) {
  t.test(`${REQUESTS_PER_ROUTE} malformed requests to ${method} ${path} get a 4xx with a message, never a 5xx`, async (t) => {
    const failures: string[] = [];
    const statuses = new Map<number, number>();
    for (let i = 0; i < REQUESTS_PER_ROUTE; i++) {
      const m = mutate(method, path);
      const response = await api.service.app.inject({
        method: method as 'GET',
        url: m.url,
        headers: m.headers,
        payload: m.payload,
        // Each request from its own address, so the sign-in rate limit does not answer all of them.
        remoteAddress: `10.${int(256)}.${int(256)}.${int(256)}`,
      });
      statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
      const contentType = String(response.headers['content-type'] ?? '');
      if (path === '/ready' && response.statusCode === 503 && notReadyReasons(response.body) > 0) {
        // Not ready (this service runs without Elasticsearch): /ready's designed answer, with its reasons.
      } else if (response.statusCode >= 500) {
        failures.push(`${response.statusCode} for ${m.describe}: ${response.body.slice(0, 300)}`);
      } else if (response.statusCode >= 400 && messageOf(response.body, contentType) === '') {
        failures.push(`${response.statusCode} without a message for ${m.describe}: ${response.body.slice(0, 300)}`);
      }
    }
    t.same(failures.slice(0, 5), [], `${failures.length} of ${REQUESTS_PER_ROUTE} failed`);
    t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  });
}

t.test('the service still answers after the fuzzing', async (t) => {
  const response = await api.call('GET', '/api/v1/queue/stats');
  t.equal(response.statusCode, 200);
});
