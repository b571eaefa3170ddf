import t from 'tap';
import { createTestDatabase, sleep } from './helpers/database.ts';
import { AUTH, json, startApi, TOKEN, type Api } from './helpers/api.ts';

const ANONYMOUS = { authorization: '' };
const form = (token: string) => ({ body: `token=${encodeURIComponent(token)}`, headers: { ...ANONYMOUS, 'content-type': 'application/x-www-form-urlencoded' } });

/** Signs in as a browser would and returns the session cookie and the page's CSRF token. */
async function signIn(api: Api): Promise<{ cookie: string; csrf: string }> {
  const response = await api.call('POST', '/dashboard/sign-in', form(TOKEN));
  if (response.statusCode !== 303) throw new Error(`sign-in answered ${response.statusCode}: ${response.body}`);
  const setCookie = String(response.headers['set-cookie']);
  const cookie = setCookie.split(';')[0]!;
  const page = await api.call('GET', '/dashboard', { headers: { ...ANONYMOUS, cookie } });
  const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page.body)?.[1];
  if (!csrf) throw new Error('the dashboard page has no CSRF token');
  return { cookie, csrf };
}

t.test('with API_TOKEN set', async (t) => {
  const db = await createTestDatabase(t);
  const api = await startApi(t, {}, db);

  t.test('a request without a token is refused with a message saying what to send', async (t) => {
    const response = await api.call('GET', '/api/v1/queue/stats', { headers: ANONYMOUS });
    t.equal(response.statusCode, 401);
    t.equal(response.headers['www-authenticate'], 'Bearer realm="queue-service"');
    t.same(json(response), { statusCode: 401, error: 'Unauthorized', message: 'send Authorization: Bearer <API_TOKEN>, or sign in at /dashboard' });
  });

  t.test('a wrong or malformed token is refused, before the request is even validated', async (t) => {
    const wrong = await api.call('POST', '/api/v1/queue/jobs', { body: { nonsense: true }, headers: { authorization: `Bearer ${TOKEN}x` } });
    t.equal(wrong.statusCode, 401);
    t.match(json(wrong), { message: "the bearer token is not this service's API_TOKEN" });
    for (const authorization of [`Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`, TOKEN, 'Bearer', `Bearer ${TOKEN} extra`]) {
      const response = await api.call('GET', '/api/v1/queue/stats', { headers: { authorization } });
      t.equal(response.statusCode, 401, authorization);
      t.match(json(response), { message: 'the Authorization header must be "Bearer <API_TOKEN>"' });
    }
    t.equal((await api.call('GET', '/api/v1/queue/stats', { headers: { authorization: `bearer ${TOKEN}` } })).statusCode, 200, 'the scheme is case-insensitive');
  });

  t.test('/health, /ready, /metrics and /docs answer without a token', async (t) => {
    t.equal((await api.call('GET', '/health', { headers: ANONYMOUS })).statusCode, 200);
    t.equal((await api.call('GET', '/ready', { headers: ANONYMOUS })).statusCode, 503, 'not ready without Elasticsearch, but answering');
    t.equal((await api.call('GET', '/metrics', { headers: ANONYMOUS })).statusCode, 200);
    t.equal((await api.call('GET', '/docs/json', { headers: ANONYMOUS })).statusCode, 200);
  });

  t.test('the dashboard shows the sign-in form until signed in', async (t) => {
    const response = await api.call('GET', '/dashboard', { headers: ANONYMOUS });
    t.equal(response.statusCode, 401);
    t.match(response.headers['content-type'], /text\/html/);
    t.match(response.body, /<form method="post" action="\/dashboard\/sign-in">/);
    t.match(response.body, /Sign in with the API token/);
    t.notMatch(response.body, /csrf-token/, 'no dashboard data before sign-in');
  });

  t.test('a wrong token at sign-in sets no cookie', async (t) => {
    const response = await api.call('POST', '/dashboard/sign-in', form('not-the-token'));
    t.equal(response.statusCode, 401);
    t.equal(response.headers['set-cookie'], undefined);
    t.match(response.body, /That is not the API token/);
  });

  t.test('sign-in sets an HttpOnly, SameSite=Strict session cookie that opens the dashboard and the API', async (t) => {
    const response = await api.call('POST', '/dashboard/sign-in', form(TOKEN));
    t.equal(response.statusCode, 303);
    t.equal(response.headers.location, '/dashboard');
    const setCookie = String(response.headers['set-cookie']);
    t.match(setCookie, /^qs_session=v1\.\d+\.[\w-]+\.[\w-]+; Max-Age=28800; Path=\/; HttpOnly; SameSite=Strict$/);
    const cookie = setCookie.split(';')[0]!;
    const page = await api.call('GET', '/dashboard', { headers: { ...ANONYMOUS, cookie } });
    t.equal(page.statusCode, 200);
    t.match(page.headers['content-security-policy'], /default-src 'none'; script-src 'nonce-[^']+'/);
    t.match(page.body, /<h2>Dead letters/);
    t.equal((await api.call('GET', '/api/v1/queue/stats', { headers: { ...ANONYMOUS, cookie } })).statusCode, 200);
  });

  t.test('a change made with the session cookie needs the page\'s CSRF token', async (t) => {
    const { cookie, csrf } = await signIn(api);
    const body = { queue: 'search-sync.listings', data: { table: 'listings', id: '8f4c2a9e-1b6d-4c3e-9a7f-000000000001' } };
    const without = await api.call('POST', '/api/v1/queue/jobs', { body, headers: { ...ANONYMOUS, cookie } });
    t.equal(without.statusCode, 403);
    t.match(json(without), { message: "a change made with the dashboard session must carry the page's x-csrf-token header; reload /dashboard" });
    const wrong = await api.call('POST', '/api/v1/queue/jobs', { body, headers: { ...ANONYMOUS, cookie, 'x-csrf-token': `${csrf}x` } });
    t.equal(wrong.statusCode, 403);
    const right = await api.call('POST', '/api/v1/queue/jobs', { body, headers: { ...ANONYMOUS, cookie, 'x-csrf-token': csrf } });
    t.equal(right.statusCode, 201);
  });

  t.test('a tampered session cookie is refused', async (t) => {
    const { cookie } = await signIn(api);
    const [name, value] = cookie.split('=') as [string, string];
    const parts = value.split('.');
    parts[1] = String(Number(parts[1]) + 86_400); // a day longer
    const response = await api.call('GET', '/api/v1/queue/stats', { headers: { ...ANONYMOUS, cookie: `${name}=${parts.join('.')}` } });
    t.equal(response.statusCode, 401);
    t.equal((await api.call('GET', '/dashboard', { headers: { ...ANONYMOUS, cookie: `${name}=${parts.join('.')}` } })).statusCode, 401);
  });

  t.test('sign-out clears the cookie', async (t) => {
    const { cookie } = await signIn(api);
    const response = await api.call('POST', '/dashboard/sign-out', { headers: { ...ANONYMOUS, cookie } });
    t.equal(response.statusCode, 303);
    t.match(String(response.headers['set-cookie']), /^qs_session=; Max-Age=0; Path=\/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict$/);
  });

  t.test('a restarted service, or one with a new token, refuses the old sessions', async (t) => {
    const { cookie } = await signIn(api);
    const restarted = await startApi(t, {}, db);
    const afterRestart = await restarted.call('GET', '/api/v1/queue/stats', { headers: { ...ANONYMOUS, cookie } });
    t.equal(afterRestart.statusCode, 401);
    t.equal((await restarted.call('GET', '/dashboard', { headers: { ...ANONYMOUS, cookie } })).statusCode, 401);
    const rotated = await startApi(t, { API_TOKEN: `${TOKEN}-rotated` }, db);
    t.equal((await rotated.call('GET', '/api/v1/queue/stats', { headers: { ...ANONYMOUS, cookie } })).statusCode, 401);
    t.equal((await rotated.call('GET', '/api/v1/queue/stats', { headers: AUTH })).statusCode, 401, 'and the old token');
  });

  t.test('sign-in attempts are rate-limited per address', async (t) => {
    const limited = await startApi(t, {}, db);
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await limited.call('POST', '/dashboard/sign-in', form(`guess-${i}`))).statusCode);
    t.same(statuses, [...Array(10).fill(401), 429]);
    const refused = await limited.call('POST', '/dashboard/sign-in', form(TOKEN));
    t.equal(refused.statusCode, 429, 'even the right token, until the minute is over');
    t.match(json(refused), { statusCode: 429, error: 'Too Many Requests', message: /^too many sign-in attempts from this address: 10 a minute are allowed; try again in \d+ s$/ });
  });

  t.test('CORS is off: a cross-origin preflight gets no allow headers', async (t) => {
    const response = await api.call('OPTIONS', '/api/v1/queue/stats', { headers: { ...ANONYMOUS, origin: 'https://elsewhere.example', 'access-control-request-method': 'GET' } });
    t.equal(response.headers['access-control-allow-origin'], undefined);
    const get = await api.call('GET', '/api/v1/queue/stats', { headers: { origin: 'https://elsewhere.example' } });
    t.equal(get.headers['access-control-allow-origin'], undefined);
  });
});

t.test('an expired session is refused and the dashboard asks to sign in again', async (t) => {
  const api = await startApi(t, { DASHBOARD_SESSION_SECONDS: '1' });
  const response = await api.call('POST', '/dashboard/sign-in', form(TOKEN));
  const cookie = String(response.headers['set-cookie']).split(';')[0]!;
  t.equal((await api.call('GET', '/api/v1/queue/stats', { headers: { ...ANONYMOUS, cookie } })).statusCode, 200);
  await sleep(1100);
  const expired = await api.call('GET', '/api/v1/queue/stats', { headers: { ...ANONYMOUS, cookie } });
  t.equal(expired.statusCode, 401);
  t.match(json(expired), { message: 'the dashboard session has expired: sign in again at /dashboard' });
  const page = await api.call('GET', '/dashboard', { headers: { ...ANONYMOUS, cookie } });
  t.equal(page.statusCode, 401);
  t.match(page.body, /Your session has expired/);
});

t.test('with CORS_ORIGINS set, those origins and only those may call the API', async (t) => {
  const api = await startApi(t, { CORS_ORIGINS: 'https://ops.example.com' });
  const preflight = await api.call('OPTIONS', '/api/v1/queue/jobs', {
    headers: { ...ANONYMOUS, origin: 'https://ops.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });
  t.equal(preflight.statusCode, 204);
  t.equal(preflight.headers['access-control-allow-origin'], 'https://ops.example.com');
  t.match(String(preflight.headers['access-control-allow-headers']), /authorization/);
  const get = await api.call('GET', '/api/v1/queue/stats', { headers: { origin: 'https://ops.example.com' } });
  t.equal(get.statusCode, 200);
  t.equal(get.headers['access-control-allow-origin'], 'https://ops.example.com');
  const other = await api.call('GET', '/api/v1/queue/stats', { headers: { origin: 'https://elsewhere.example' } });
  t.equal(other.headers['access-control-allow-origin'], undefined);
});

t.test('with API_TOKEN unset, /api/v1 and /dashboard answer 503 saying how to turn them on', async (t) => {
  const api = await startApi(t, { API_TOKEN: '' });
  const message = /^API_TOKEN is not set, so \/api\/v1 and \/dashboard are off: set API_TOKEN \(at least 16 characters/;
  for (const [method, url] of [['GET', '/api/v1/queue/stats'], ['GET', '/api/v1/queue/jobs'], ['POST', '/api/v1/queue/dead-letters/replay']]) {
    const response = await api.call(method!, url!, { headers: ANONYMOUS });
    t.equal(response.statusCode, 503, `${method} ${url}`);
    t.match(json(response), { statusCode: 503, error: 'Service Unavailable', message });
  }
  const page = await api.call('GET', '/dashboard', { headers: ANONYMOUS });
  t.equal(page.statusCode, 503);
  t.match(page.body, /API_TOKEN is not set/);
  t.equal((await api.call('POST', '/dashboard/sign-in', form('anything'))).statusCode, 503);
  t.equal((await api.call('GET', '/health', { headers: ANONYMOUS })).statusCode, 200, '/health still answers');
  t.equal((await api.call('GET', '/metrics', { headers: ANONYMOUS })).statusCode, 200, '/metrics still answers');
});
