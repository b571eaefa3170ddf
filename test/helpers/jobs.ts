import type { TestDatabase } from './database.ts';
import { eventually } from './database.ts';

export interface JobRow {
  id: string;
  name: string;
  state: string;
  data: Record<string, unknown>;
  output: Record<string, unknown> | null;
  retry_count: number;
}

export async function jobById(db: TestDatabase, id: string): Promise<JobRow | undefined> {
  const [job] = await db.query<JobRow>('SELECT id, name, state::text, data, output, retry_count FROM pgboss.job WHERE id = $1', [id]);
  return job;
}

/** Waits until the job is in one of `states`, and returns it. */
export function waitForJob(db: TestDatabase, id: string, states: string[], timeoutMs = 15_000): Promise<JobRow> {
  return eventually(async () => {
    const job = await jobById(db, id);
    return job && states.includes(job.state) ? job : undefined;
  }, { timeoutMs }) as Promise<JobRow>;
}

/** Jobs waiting in a dead-letter queue, with the failure they brought (pg-boss keeps it as source_output). */
export function deadLetters(db: TestDatabase, queue: string) {
  return db.query<{ data: Record<string, unknown>; source_output: Record<string, unknown>; source_retry_count: number }>(
    `SELECT data, source_output, source_retry_count FROM pgboss.job WHERE name = $1 ORDER BY created_on`,
    [`${queue}.dead`],
  );
}

/** Enqueues as supabase-js and psql do, through queue.send. */
export async function send(db: TestDatabase, queue: string, data: unknown, options: unknown = {}): Promise<string> {
  const [row] = await db.query<{ id: string }>('SELECT id FROM queue.send($1, $2, $3)', [queue, JSON.stringify(data), JSON.stringify(options)]);
  return row!.id;
}
