import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import { indexAlias } from '../config/queues.ts';
import { abortRebuild, rebuildIndex, rollbackRequest, type RebuildResult } from '../tools/rebuild.ts';
import { enqueueTable, type ReindexResult } from '../tools/reindex.ts';
import { selectTables, tableShape } from '../tools/tables.ts';
import { searchClientFor, withToolContext } from './tool-context.ts';
import { integerOption, parseOptions, UsageError } from './usage.ts';

const USAGE = 'queue-service reindex [--table T] [--batch-size N] [--rebuild [--replace-index] | --abort]';
const INTERRUPTED = 130;

export async function reindexCommand(args: string[], env: Env, log: Logger): Promise<number> {
  const options = parseOptions(
    args,
    {
      table: { type: 'string' },
      'batch-size': { type: 'string' },
      rebuild: { type: 'boolean', default: false },
      'replace-index': { type: 'boolean', default: false },
      abort: { type: 'boolean', default: false },
    },
    USAGE,
  );
  if (options['replace-index'] && !options.rebuild) throw new UsageError(`--replace-index only applies to --rebuild\n\nusage: ${USAGE}`);
  if (options.abort && options.rebuild) throw new UsageError(`--abort drops a rebuild in progress; it does not go with --rebuild\n\nusage: ${USAGE}`);
  const batchSize = integerOption(options['batch-size'], 'batch-size', 1000, [1, 50_000]);
  const tables = selectTables(options.table);

  return withToolContext('reindex', env, log, { interruptible: true }, async (context) => {
    if (!options.rebuild && !options.abort) {
      for (const table of tables) {
        const result = await enqueueTable(context, await tableShape(context.pool, table), { batchSize, bump: true });
        print(describeEnqueue(result));
        if (result.interrupted) return interrupted(`${table.table}: stopped after ${result.rows} rows`);
      }
      return 0;
    }

    const search = searchClientFor(env, 'reindex --rebuild');
    try {
      for (const table of tables) {
        const alias = indexAlias(env.indexPrefix, table);
        if (options.abort) {
          const { deletedIndex } = await abortRebuild({ ...context, search }, alias);
          print(deletedIndex ? `${alias}: rebuild aborted; ${deletedIndex} deleted, the alias is unchanged` : `${alias}: rebuild record cleared; the alias already pointed at the new index, which was kept`);
          continue;
        }
        const result = await rebuildIndex({ ...context, search }, await tableShape(context.pool, table), { alias, batchSize, replaceIndex: options['replace-index'] });
        print(describeRebuild(result));
        if (result.status === 'interrupted') return interrupted(`${alias}: the rebuild into ${result.newIndex} stays in progress (live writes reach both indices)`);
      }
      return 0;
    } finally {
      await search.close();
    }
  });
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function interrupted(what: string): number {
  print(`reindex interrupted: ${what}. Nothing is lost; run the same command again to finish.`);
  return INTERRUPTED;
}

function describeEnqueue(result: ReindexResult): string {
  const joined = result.rows - result.jobsCreated;
  return `${result.table}: ${result.rows} rows enqueued as ${result.jobsCreated} new jobs` + (joined > 0 ? ` (${joined} joined a job already waiting for their row)` : '');
}

function describeRebuild(result: RebuildResult): string {
  if (result.status === 'interrupted') return `${result.alias}: rebuild into ${result.newIndex} interrupted`;
  const lines = [`${result.alias}: rebuilt into ${result.newIndex} (${result.documents} documents${result.resumed ? ', resumed' : ''}); the alias now points at it.`];
  if (result.removedIndex) lines.push(`  the concrete index ${result.removedIndex} was deleted by the swap (--replace-index): there is no old index to roll back to.`);
  if (result.previous.length > 0) {
    lines.push(`  kept for rollback: ${result.previous.join(', ')}. To roll back (then run reindex to catch up on writes since):`);
    lines.push(`    POST /_aliases ${JSON.stringify(rollbackRequest(result.alias, result.previous, result.newIndex))}`);
  }
  return lines.join('\n');
}
