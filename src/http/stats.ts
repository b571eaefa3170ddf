import type { FastifyPluginAsync } from 'fastify';
import { readStats, readThroughput } from '../db/jobs.ts';
import { errorResponses } from './errors.ts';

const nullableNumber = { type: ['number', 'null'] } as const;

/** A row of queue.stats, with the view's own column names, so psql and the API read alike. */
const statsRowSchema = {
  type: 'object',
  properties: {
    queue: { type: 'string' },
    kind: { type: 'string', enum: ['queue', 'dead-letter'] },
    dead_letter_queue: { type: ['string', 'null'] },
    queued: { type: 'integer', description: 'waiting in created, due now' },
    deferred: { type: 'integer', description: 'waiting in created with a start-after still ahead' },
    retrying: { type: 'integer', description: 'failed an attempt, waiting for the next' },
    active: { type: 'integer' },
    failed: { type: 'integer', description: 'out of attempts (kept until retention removes them)' },
    dead_lettered: { type: 'integer', description: 'waiting in the dead-letter queue this queue feeds' },
    completed_last_hour: { type: 'integer' },
    failed_last_hour: { type: 'integer' },
    jobs_per_minute: { type: 'number', description: 'completed and failed per minute over the last 5 minutes' },
    oldest_waiting_seconds: { ...nullableNumber, description: 'age of the oldest queued or retrying job' },
    oldest_waiting_since: { type: ['string', 'null'], format: 'date-time' },
    wait_p50_seconds: nullableNumber,
    wait_p95_seconds: nullableNumber,
    run_p50_seconds: nullableNumber,
    run_p95_seconds: nullableNumber,
  },
  required: ['queue', 'kind', 'queued', 'deferred', 'retrying', 'active', 'failed', 'dead_lettered', 'completed_last_hour', 'failed_last_hour', 'jobs_per_minute'],
} as const;

/** GET /api/v1/queue/stats and /throughput: the stats views as JSON. */
export const statsRoutes: FastifyPluginAsync = async (app) => {
  app.get('/stats', {
    schema: {
      tags: ['queue'],
      summary: 'queue.stats: one row per queue',
      security: [{ bearer: [] }],
      response: {
        200: {
          type: 'object',
          properties: { generatedAt: { type: 'string', format: 'date-time' }, queues: { type: 'array', items: statsRowSchema } },
          required: ['generatedAt', 'queues'],
        },
        ...errorResponses(401, 403, 503),
      },
    },
  }, async () => ({ generatedAt: new Date(), queues: await readStats(app.services.pool) }));

  app.get('/throughput', {
    schema: {
      tags: ['queue'],
      summary: 'Completed and failed jobs per queue and minute (queue.throughput_since)',
      security: [{ bearer: [] }],
      querystring: {
        type: 'object',
        properties: { minutes: { type: 'integer', minimum: 1, maximum: 1440, default: 60, description: 'how many minutes back, up to 24 hours' } },
        additionalProperties: false,
      },
      response: {
        200: {
          type: 'object',
          properties: {
            minutes: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  queue: { type: 'string' },
                  minute: { type: 'string', format: 'date-time' },
                  completed: { type: 'integer' },
                  failed: { type: 'integer' },
                },
                required: ['queue', 'minute', 'completed', 'failed'],
              },
            },
          },
          required: ['minutes'],
        },
        ...errorResponses(400, 401, 403, 503),
      },
    },
  }, async (request) => {
    const { minutes } = request.query as { minutes: number };
    return { minutes: await readThroughput(app.services.pool, minutes) };
  });
};
