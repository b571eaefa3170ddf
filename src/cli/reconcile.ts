import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import { driftCount, runReconcile, type TableOutcome } from '../tools/reconcile.ts';
import { selectTables } from '../tools/tables.ts';
import { columns, searchClientFor, withToolContext } from './tool-context.ts';
import { integerOption, parseOptions } from './usage.ts';

const USAGE = 'queue-service reconcile [--table T] [--repair] [--chunk-size N]';

/** Exit codes of the contract: 0 no drift, 1 drift found (and repaired with --repair), 2 error. */
const CLEAN = 0;
const DRIFT = 1;
const ERROR = 2;

export async function reconcileCommand(args: string[], env: Env, log: Logger): Promise<number> {
  const options = parseOptions(args, { table: { type: 'string' }, repair: { type: 'boolean', default: false }, 'chunk-size': { type: 'string' } }, USAGE);
  const chunkSize = integerOption(options['chunk-size'], 'chunk-size', 1000, [1, 10_000]);
  const tables = selectTables(options.table);
  const search = searchClientFor(env, 'reconcile');
  try {
    return await withToolContext('reconcile', env, log, { interruptible: true }, async (context) => {
      const outcomes = await runReconcile({ ...context, search }, tables, { source: 'cli', repair: options.repair, indexPrefix: env.indexPrefix, chunkSize });
      for (const outcome of outcomes) process.stdout.write(`${describe(outcome, options.repair)}\n`);
      if (outcomes.some((o) => o.error || o.report?.interrupted) || outcomes.length < tables.length) return ERROR;
      return outcomes.some((o) => driftCount(o.report!) > 0) ? DRIFT : CLEAN;
    });
  } finally {
    await search.close();
  }
}

function describe(outcome: TableOutcome, repair: boolean): string {
  if (outcome.error) return `${outcome.table}: reconcile failed: ${outcome.error}`;
  const report = outcome.report!;
  const drift = driftCount(report);
  const head = `${report.table}: ${report.rows} rows, ${report.documents} documents in ${report.alias}: ${drift === 0 ? 'no drift' : `${drift} drifted`}${report.interrupted ? ' (interrupted: only part was checked)' : ''}`;
  const kinds = [
    ['missing', report.missing],
    ['stale', report.stale],
    ['orphaned', report.orphaned],
  ] as const;
  const lines = [head, columns(kinds.map(([name, kind]) => [name, kind.count, kind.sample.join(', ')]))];
  if (report.ahead > 0) lines.push(`  ${report.ahead} stale documents carry versions newer than the database's (a restored database backup?); repair moves the version clock past them`);
  if (report.inFlight > 0) lines.push(`  ${report.inFlight} ids had a sync waiting or running during the check: not counted`);
  if (repair && drift > 0) lines.push(`  repair: ${report.repaired} drifted ids enqueued with new versions; the service syncs them`);
  if (!repair && drift > 0) lines.push('  run reconcile --repair to enqueue the fixes');
  return lines.join('\n');
}
