import { findSyncTable, SYNC_TABLES, type SyncTable } from '../config/queues.ts';
import * as plans from '../db/plans.ts';
import type { Pool } from '../db/pool.ts';
import { ToolError } from './errors.ts';
import * as toolPlans from './plans.ts';

/** The synced tables a tool works on: the one named, or all of them. */
export function selectTables(name: string | undefined): SyncTable[] {
  if (name === undefined) return [...SYNC_TABLES];
  const table = findSyncTable(name);
  if (!table) throw new ToolError(`"${name}" is not a synced table (synced tables: ${SYNC_TABLES.map((t) => t.table).join(', ')})`);
  return [table];
}

export async function tableShape(pool: Pool, table: SyncTable): Promise<toolPlans.TableShape> {
  const qualified = `${table.schema}.${table.table}`;
  const { rows } = await pool.query<{ type: string }>(plans.keyType, [qualified]);
  const keyType = rows[0]?.type;
  if (!keyType) throw new ToolError(`${qualified} has no single-column primary key; run migrate, which checks the app tables`);
  return { table, keyType };
}

/** The database's clock: cut-offs are compared with timestamps the database wrote (job times). */
export async function databaseNow(pool: Pool): Promise<Date> {
  const { rows } = await pool.query<{ now: Date }>(toolPlans.databaseNow);
  return rows[0]!.now;
}
