import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import { migrateLegacy, rollbackLegacy, type LegacyReport } from '../tools/legacy.ts';
import { LEGACY_TABLE } from '../tools/plans.ts';
import { columns, withToolContext } from './tool-context.ts';
import { parseOptions, UsageError } from './usage.ts';

const USAGE = 'queue-service migrate-legacy [--dry-run | --rollback]';

export async function migrateLegacyCommand(args: string[], env: Env, log: Logger): Promise<number> {
  const options = parseOptions(args, { 'dry-run': { type: 'boolean', default: false }, rollback: { type: 'boolean', default: false } }, USAGE);
  if (options['dry-run'] && options.rollback) throw new UsageError(`--dry-run and --rollback do not go together\n\nusage: ${USAGE}`);
  return withToolContext('migrate-legacy', env, log, { interruptible: false }, async ({ pool }) => {
    if (options.rollback) {
      const { restored, alreadyPresent } = await rollbackLegacy(pool);
      if (restored.length === 0 && alreadyPresent.length === 0) {
        process.stdout.write('nothing to restore: migrate-legacy has not dropped any legacy trigger in this database (or --rollback already restored them).\n');
        return 0;
      }
      const lines = [
        ...restored.map((t) => `restored legacy trigger ${t.trigger} on ${t.table}`),
        ...alreadyPresent.map((t) => `legacy trigger ${t.trigger} on ${t.table} was already there`),
        'Writes now reach elasticsearch_sync_queue again, so the old processor can take over; stop queue-service (or leave its workers off) so that only one of them writes to the index.',
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    }
    const report = await migrateLegacy(pool, { dryRun: options['dry-run'] });
    process.stdout.write(`${describe(report)}\n`);
    log.info({ dryRun: report.dryRun, moved: total(report.moved), jobsCreated: report.jobsCreated, untouched: total(report.untouched), triggers: report.triggers.length }, 'migrate-legacy finished');
    return 0;
  });
}

const total = (counts: { rows: number }[]) => counts.reduce((sum, c) => sum + c.rows, 0);

function describe(report: LegacyReport): string {
  const verb = report.dryRun ? 'would move' : 'moved';
  const lines: string[] = [report.dryRun ? `migrate-legacy --dry-run: nothing was changed.` : 'migrate-legacy: done, in one transaction.'];
  const moved = total(report.moved);
  if (moved === 0) lines.push(`no pending, processing or failed rows to move in ${LEGACY_TABLE}.`);
  else {
    lines.push(`${verb} ${moved} rows of ${LEGACY_TABLE} into the search-sync queues:`);
    lines.push(columns([['table', 'status', 'rows'], ...report.moved.map((c) => [c.table, c.status, c.rows])]));
    if (!report.dryRun) lines.push(`  as ${report.jobsCreated} new jobs; the other ${moved - report.jobsCreated} joined a job already waiting for their row. The rows are marked migrated.`);
  }
  if (report.untouched.length > 0) {
    lines.push(`left untouched (still in ${LEGACY_TABLE}, nothing lost; move or delete them by hand):`);
    lines.push(columns(report.untouched.map((c) => [c.table, c.status, c.rows, c.reason + (c.sample.length > 0 ? ` (e.g. ${c.sample.join(', ')})` : '')])));
  }
  if (report.triggers.length === 0) lines.push('no legacy triggers on the synced tables.');
  else {
    lines.push(`${report.dryRun ? 'would drop' : 'dropped'} legacy triggers (migrate-legacy --rollback restores them):`);
    lines.push(columns(report.triggers.map((t) => [t.trigger, `on ${t.table}`])));
  }
  if (report.archived.length > 0) lines.push(`kept as the archive: ${report.archived.map((c) => `${c.rows} ${c.status} (${c.table})`).join(', ')}`);
  if (report.absentColumns.length > 0) lines.push(`(${LEGACY_TABLE} has no ${report.absentColumns.join(', ')}; not needed)`);
  return lines.join('\n');
}
