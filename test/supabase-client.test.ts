import { createClient } from '@supabase/supabase-js';
import t from 'tap';
import { createQueueClient, QueueClientError } from '../src/supabase/client.ts';

// supabase-js against a recording fetch: the requests are what PostgREST would receive, and the
// answers are PostgREST's own shapes (its error body is {code, message, details, hint}).

const SUPABASE_URL = 'https://project-ref.supabase.test';
const SERVICE_KEY = 'service-role-key-for-tests';

interface Recorded {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

function recordingClient(answer: (request: Recorded) => Response | Promise<Response>) {
  const requests: Recorded[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const text = await request.text();
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => (headers[name] = value));
    const recorded: Recorded = {
      url: request.url,
      method: request.method,
      headers,
      body: text === '' ? undefined : JSON.parse(text),
    };
    requests.push(recorded);
    return answer(recorded);
  };
  const supabase = createClient(SUPABASE_URL, SERVICE_KEY, {
    global: { fetch },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });
  return { queue: createQueueClient(supabase), requests };
}

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

t.test('send posts the queue, data and options to /rest/v1/rpc/send in the queue schema, with the key', async (t) => {
  const { queue, requests } = recordingClient(() => json(200, { id: '0b7c1d9e-4f5a-4c3b-8a2d-000000000001', created: true }));
  const result = await queue.send('emails', { to: 'a@example.com' }, { retryLimit: 2, startAfter: new Date('2030-01-02T03:04:05Z') });
  t.same(result, { id: '0b7c1d9e-4f5a-4c3b-8a2d-000000000001', created: true });
  t.equal(requests.length, 1);
  const [request] = requests;
  t.equal(request!.url, `${SUPABASE_URL}/rest/v1/rpc/send`);
  t.equal(request!.method, 'POST');
  t.match(request!.headers, {
    apikey: SERVICE_KEY,
    authorization: `Bearer ${SERVICE_KEY}`,
    'content-profile': 'queue',
    'content-type': 'application/json',
  });
  t.same(request!.body, {
    queue_name: 'emails',
    data: { to: 'a@example.com' },
    options: { retryLimit: 2, startAfter: '2030-01-02T03:04:05.000Z' },
  });
});

t.test('a search-sync send carries {table, id} and empty options, and reports a joined job', async (t) => {
  const { queue, requests } = recordingClient(() => json(200, { id: '0b7c1d9e-4f5a-4c3b-8a2d-000000000002', created: false }));
  const result = await queue.send('search-sync.listings', { table: 'listings', id: 'abc' });
  t.same(result, { id: '0b7c1d9e-4f5a-4c3b-8a2d-000000000002', created: false });
  t.same(requests[0]!.body, { queue_name: 'search-sync.listings', data: { table: 'listings', id: 'abc' }, options: {} });
});

t.test('stats reads get_stats with a GET in the queue schema and returns camelCase rows', async (t) => {
  const row = {
    queue: 'search-sync.listings', policy: 'stately', dead_letter: 'search-sync.listings.dead',
    queued: 3, active: 1, deferred: 0, failed: 0, total: 4, counted_at: '2030-01-01T00:00:00+00:00',
  };
  const { queue, requests } = recordingClient(() => json(200, [row]));
  t.same(await queue.stats(), [
    { queue: 'search-sync.listings', policy: 'stately', deadLetter: 'search-sync.listings.dead', queued: 3, active: 1, deferred: 0, failed: 0, total: 4, countedAt: '2030-01-01T00:00:00+00:00' },
  ]);
  const [request] = requests;
  t.equal(request!.url, `${SUPABASE_URL}/rest/v1/rpc/get_stats`);
  t.equal(request!.method, 'GET');
  t.match(request!.headers, { apikey: SERVICE_KEY, authorization: `Bearer ${SERVICE_KEY}`, 'accept-profile': 'queue' });
  t.equal(request!.body, undefined);
});

const errorCases: [string, number, Record<string, unknown>, RegExp][] = [
  [
    'a key other than service_role',
    401,
    { code: '42501', message: 'permission denied for function send', details: null, hint: null },
    /queue\.send is refused for this key \(permission denied for function send\): it is granted to service_role only/,
  ],
  [
    'a schema the API does not expose',
    406,
    { code: 'PGRST106', message: 'Invalid schema: queue', details: null, hint: 'Only the following schemas are exposed: public, graphql_public' },
    /the "queue" schema is not exposed by this Supabase API: add "queue" to \[api\] schemas in supabase\/config\.toml/,
  ],
  [
    'a database without the migration',
    404,
    { code: 'PGRST202', message: 'Could not find the function queue.send(data, options, queue_name) in the schema cache', details: null, hint: null },
    /queue\.send does not exist in this database: apply the queue service's Supabase migration/,
  ],
  [
    'an unknown queue',
    400,
    { code: '42704', message: 'queue-service: queue "emails" does not exist', details: null, hint: 'queues: search-sync.inventory_items, search-sync.listings' },
    /^queue\.send: queue "emails" does not exist \(queues: search-sync\.inventory_items, search-sync\.listings\)$/,
  ],
  [
    'bad data',
    400,
    { code: '22023', message: 'queue-service: data for search-sync.listings must be {"table": "listings", "id": "<primary key>"}', details: null, hint: null },
    /^queue\.send: data for search-sync\.listings must be/,
  ],
];

for (const [what, status, body, message] of errorCases) {
  t.test(`send throws a QueueClientError for ${what}`, async (t) => {
    const { queue } = recordingClient(() => json(status, body));
    const error = await queue.send('emails', {}).then(
      () => null,
      (err: unknown) => err,
    );
    t.type(error, QueueClientError);
    t.match(error, { message, code: body.code, status, hint: body.hint ?? null });
  });
}

t.test('stats throws a QueueClientError for an anon or authenticated key', async (t) => {
  const { queue } = recordingClient(() => json(401, { code: '42501', message: 'permission denied for schema queue', details: null, hint: null }));
  await t.rejects(queue.stats(), { name: 'QueueClientError', code: '42501', status: 401, message: /^queue\.get_stats is refused for this key \(permission denied for schema queue\)/ });
});

t.test('send throws a QueueClientError naming the network failure when Supabase cannot be reached, and does not retry', async (t) => {
  const { queue, requests } = recordingClient(() => {
    throw new TypeError('fetch failed');
  });
  await t.rejects(queue.send('emails', {}), { name: 'QueueClientError', status: 0, code: null, message: 'queue.send could not reach Supabase: TypeError: fetch failed' });
  t.equal(requests.length, 1, 'a send is a POST, which supabase-js never retries, so a job is never sent twice');
});

t.test('send refuses arguments of the wrong shape before any request', async (t) => {
  const { queue, requests } = recordingClient(() => json(200, {}));
  await t.rejects(queue.send('', {}), new TypeError('queue must be a non-empty string'));
  await t.rejects(queue.send('emails', [] as unknown as Record<string, unknown>), new TypeError('data must be a plain object'));
  t.equal(requests.length, 0);
});
