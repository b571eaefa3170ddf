// A typed client for application code on Supabase (Edge Functions, servers): enqueue jobs and read
// queue stats through the supabase-js client the app already has, with the functions of
// migrations/006_supabase_client.sql. Import it as `queue-service/supabase`; it pulls in nothing of
// the service (no pg, no pg-boss), only calls `supabase.schema('queue').rpc(...)`.
//
//   const queue = createQueueClient(createClient(SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY));
//   await queue.send('search-sync.listings', { table: 'listings', id });
//
// The functions are granted to service_role only: use the service role key, on the server.

/** What the PostgREST error body (or supabase-js, for a network failure) carries. */
export interface RpcError {
  message: string;
  code?: string | null;
  details?: string | null;
  hint?: string | null;
}

export interface RpcResponse {
  data: unknown;
  error: RpcError | null;
  status: number;
}

/** The part of a supabase-js `SupabaseClient` this client uses. */
export interface SupabaseRpcClient {
  schema(schema: string): {
    rpc(fn: string, args?: Record<string, unknown>, options?: { get?: boolean }): PromiseLike<RpcResponse>;
  };
}

/** pg-boss send options the SQL function accepts (queues other than search-sync ones). */
export interface SendOptions {
  priority?: number;
  /** A timestamp, or seconds from now. */
  startAfter?: Date | string | number;
  singletonKey?: string;
  singletonSeconds?: number;
  retryLimit?: number;
  retryDelay?: number;
  retryBackoff?: boolean;
  retryDelayMax?: number;
  expireInSeconds?: number;
  deleteAfterSeconds?: number;
  retentionSeconds?: number;
}

export interface SendResult {
  /** The job's id; null when a singleton rule of the queue refused the job. */
  id: string | null;
  /** False when the send joined the row's waiting search-sync job, or was refused. */
  created: boolean;
}

export interface QueueStats {
  queue: string;
  policy: string;
  deadLetter: string | null;
  queued: number;
  active: number;
  deferred: number;
  failed: number;
  total: number;
  /** When pg-boss last counted this queue (its supervisor refreshes the counts). */
  countedAt: string | null;
}

export interface QueueClient {
  send(queue: string, data: Record<string, unknown>, options?: SendOptions): Promise<SendResult>;
  stats(): Promise<QueueStats[]>;
}

export class QueueClientError extends Error {
  override name = 'QueueClientError';
  /** The SQLSTATE or PostgREST code (PGRST...); null for a failure before any answer. */
  readonly code: string | null;
  /** The HTTP status; 0 when the request never got an answer. */
  readonly status: number;
  readonly details: string | null;
  readonly hint: string | null;

  constructor(message: string, error: RpcError, status: number) {
    super(message);
    this.code = error.code || null;
    this.status = status;
    this.details = error.details ?? null;
    this.hint = error.hint ?? null;
  }
}

const SCHEMA = 'queue';

/** What to tell the caller for an error the app's set-up causes, rather than its input. */
function explain(fn: string, error: RpcError, status: number): string {
  const message = error.message.replace(/^queue-service: /, '');
  switch (error.code) {
    case '42501':
      return `queue.${fn} is refused for this key (${message}): it is granted to service_role only, so create the client with the service role key, on the server`;
    case 'PGRST106':
      return `the "${SCHEMA}" schema is not exposed by this Supabase API: add "${SCHEMA}" to [api] schemas in supabase/config.toml (hosted: Project Settings > Data API > Exposed schemas)`;
    case 'PGRST202':
      return `queue.${fn} does not exist in this database: apply the queue service's Supabase migration (supabase/migrations/*_queue_service.sql) or run \`queue-service migrate\``;
  }
  if (status === 0) return `queue.${fn} could not reach Supabase: ${message}`;
  return `queue.${fn}: ${message}${error.hint ? ` (${error.hint})` : ''}`;
}

function assertArguments(queue: unknown, data: unknown, options: unknown): void {
  if (typeof queue !== 'string' || queue === '') throw new TypeError('queue must be a non-empty string');
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new TypeError('data must be a plain object');
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new TypeError('options must be a plain object');
}

const toJsonOptions = (options: SendOptions): Record<string, unknown> =>
  options.startAfter instanceof Date ? { ...options, startAfter: options.startAfter.toISOString() } : { ...options };

interface StatsRow {
  queue: string;
  policy: string;
  dead_letter: string | null;
  queued: number;
  active: number;
  deferred: number;
  failed: number;
  total: number;
  counted_at: string | null;
}

export function createQueueClient(supabase: SupabaseRpcClient): QueueClient {
  const call = async (fn: string, args: Record<string, unknown> | undefined, options?: { get?: boolean }): Promise<unknown> => {
    const { data, error, status } = await supabase.schema(SCHEMA).rpc(fn, args, options);
    if (error) throw new QueueClientError(explain(fn, error, status), error, status);
    return data;
  };

  return {
    async send(queue, data, options = {}) {
      assertArguments(queue, data, options);
      const result = (await call('send', { queue_name: queue, data, options: toJsonOptions(options) })) as SendResult;
      return { id: result.id, created: result.created };
    },
    async stats() {
      // A GET: the function is STABLE, and supabase-js retries a GET the server could not answer.
      const rows = (await call('get_stats', undefined, { get: true })) as StatsRow[];
      return rows.map((r) => ({
        queue: r.queue,
        policy: r.policy,
        deadLetter: r.dead_letter,
        queued: r.queued,
        active: r.active,
        deferred: r.deferred,
        failed: r.failed,
        total: r.total,
        countedAt: r.counted_at,
      }));
    },
  };
}
