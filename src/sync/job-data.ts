// Job data is validated where it enters the worker: a job can come from the triggers, the API,
// psql or a migration, and whatever is wrong with it must dead-letter with a reason, not retry
// forever or crash the batch.

/** Larger than any `{table, id}` a sync job needs: something else was put in the queue. */
export const MAX_JOB_DATA_BYTES = 4096;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INTEGER_RANGES: Record<string, [bigint, bigint]> = {
  smallint: [-32768n, 32767n],
  integer: [-2147483648n, 2147483647n],
  bigint: [-9223372036854775808n, 9223372036854775807n],
};
/** Elasticsearch refuses a document _id longer than 512 bytes. */
const MAX_ID_BYTES = 512;

export type KeyValidator = (id: string) => string | null;

/** A validator for ids of a primary key of this SQL type, or null when the type is not supported. */
export function keyValidator(sqlType: string): KeyValidator | null {
  if (sqlType === 'uuid') return (id) => (UUID.test(id) ? null : `id "${id}" is not a uuid`);
  const range = INTEGER_RANGES[sqlType];
  if (range) {
    return (id) => {
      if (!/^-?\d{1,20}$/.test(id)) return `id "${id}" is not an integer`;
      const n = BigInt(id);
      return n < range[0] || n > range[1] ? `id ${id} is out of range for ${sqlType}` : null;
    };
  }
  if (sqlType === 'text' || sqlType.startsWith('character varying')) {
    return (id) => (id.length === 0 ? 'id is empty' : Buffer.byteLength(id) > MAX_ID_BYTES ? `id is longer than ${MAX_ID_BYTES} bytes` : null);
  }
  return null;
}

export type ParsedJob = { ok: true; id: string } | { ok: false; reason: string };

export function parseSyncJob(data: unknown, table: string, validateKey: KeyValidator): ParsedJob {
  const size = Buffer.byteLength(JSON.stringify(data ?? null));
  if (size > MAX_JOB_DATA_BYTES) return { ok: false, reason: `job data is ${size} bytes; a sync job carries only {table, id}` };
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, reason: 'job data must be an object {table, id}' };
  const { table: jobTable, id } = data as Record<string, unknown>;
  if (jobTable !== table) return { ok: false, reason: `job data names table ${JSON.stringify(jobTable)}, but this queue syncs ${table}` };
  if (typeof id !== 'string' && typeof id !== 'number') return { ok: false, reason: 'job data has no id' };
  const key = String(id);
  const problem = validateKey(key);
  return problem ? { ok: false, reason: problem } : { ok: true, id: key };
}
