import type { FastifyPluginAsync } from 'fastify';
import type { QueueConfig } from '../config/queues.ts';
import { listDeadLetters, replayDeadLetters } from '../db/jobs.ts';
import { errorResponses, HttpError } from './errors.ts';

const uuid = { type: 'string', format: 'uuid' } as const;
const nullableString = { type: ['string', 'null'] } as const;

const deadLetterSchema = {
  type: 'object',
  properties: {
    id: uuid,
    deadLetterQueue: { type: 'string' },
    sourceQueue: { ...nullableString, description: 'the queue the job came from, and goes back to on replay' },
    data: { description: 'the job data; for a search-sync job {table, id}: the row' },
    error: nullableString,
    output: {},
    attempts: { type: 'integer' },
    sourceJobId: nullableString,
    firstEnqueuedAt: { type: ['string', 'null'], format: 'date-time' },
    deadLetteredAt: { type: 'string', format: 'date-time' },
  },
  required: ['id', 'deadLetterQueue', 'attempts', 'deadLetteredAt'],
} as const;

/** The queues with a dead-letter queue, found by either name. */
function replayTargets(queues: readonly QueueConfig[]): Map<string, { source: QueueConfig; deadLetter: string }> {
  const targets = new Map<string, { source: QueueConfig; deadLetter: string }>();
  for (const source of queues) {
    const deadLetter = source.options.deadLetter;
    if (!deadLetter) continue;
    targets.set(source.name, { source, deadLetter });
    targets.set(deadLetter, { source, deadLetter });
  }
  return targets;
}

/** Dead letters: list them, and replay them back to the queue they came from. */
export const deadLetterRoutes: FastifyPluginAsync = async (app) => {
  const { pool } = app.services;
  const targets = replayTargets(app.services.queues);
  const names = [...targets.keys()];
  const deadLetterQueues = [...new Set([...targets.values()].map((t) => t.deadLetter))];

  app.get('/dead-letters', {
    schema: {
      tags: ['dead letters'],
      summary: 'Dead-lettered jobs (queue.dead_letters), newest first, a page at a time',
      security: [{ bearer: [] }],
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          queue: { type: 'string', enum: names, description: 'a queue, or its dead-letter queue' },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          cursor: { type: 'string', maxLength: 200 },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: { deadLetters: { type: 'array', items: deadLetterSchema }, nextCursor: nullableString },
          required: ['deadLetters', 'nextCursor'],
        },
        ...errorResponses(400, 401, 403, 503),
      },
    },
  }, async (request) => {
    const { queue, limit, cursor } = request.query as { queue?: string; limit: number; cursor?: string };
    const result = await listDeadLetters(pool, queue ? [targets.get(queue)!.deadLetter] : deadLetterQueues, cursor ?? null, limit);
    return { deadLetters: result.items, nextCursor: result.nextCursor };
  });

  app.post('/dead-letters/replay', {
    schema: {
      tags: ['dead letters'],
      summary: 'Move dead letters back to the queue they came from',
      description:
        'All dead letters of the queue, or only the given ids. A search-sync dead letter becomes a fresh job for its row, which syncs the row as it is when it runs; a row that already has a job waiting joins it.',
      security: [{ bearer: [] }],
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['queue'],
        properties: {
          queue: { type: 'string', enum: names, description: 'the queue, or its dead-letter queue' },
          ids: { type: 'array', items: uuid, minItems: 1, maxItems: 10_000, uniqueItems: true, description: 'dead-letter job ids; leave out to replay all' },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            queue: { type: 'string' },
            deadLetterQueue: { type: 'string' },
            replayed: { type: 'integer' },
            replayedIds: { type: 'array', items: uuid },
            jobsCreated: { type: 'integer', description: 'fewer than replayed when a row already had a job waiting' },
            skippedIds: { type: 'array', items: uuid, description: 'left in place: their data names no row' },
            notFoundIds: { type: 'array', items: uuid, description: 'requested ids that are not waiting in the dead-letter queue' },
          },
          required: ['queue', 'deadLetterQueue', 'replayed', 'replayedIds', 'jobsCreated', 'skippedIds', 'notFoundIds'],
        },
        ...errorResponses(400, 401, 403, 404, 503),
      },
    },
  }, async (request) => {
    const { queue, ids } = request.body as { queue: string; ids?: string[] };
    const { source, deadLetter } = targets.get(queue)!;
    const result = await replayDeadLetters(pool, source, deadLetter, ids ?? null);
    if (ids && result.replayed === 0 && result.skippedIds.length === 0) {
      throw new HttpError(404, `none of the ${ids.length} id(s) is a dead letter waiting in ${deadLetter}`);
    }
    request.log.info({ queue: source.name, replayed: result.replayed, jobsCreated: result.jobsCreated, skipped: result.skippedIds.length }, 'dead letters replayed through the API');
    return result;
  });
};
