import type { ValidateFunction } from 'ajv';
import type { FastifyPluginAsync } from 'fastify';
import type { QueueConfig } from '../config/queues.ts';
import { cancelJob, enqueue, getJob, listJobs, retryJob, type EnqueueOptions } from '../db/jobs.ts';
import * as plans from '../db/plans.ts';
import { keyValidator, type KeyValidator } from '../sync/job-data.ts';
import { createValidators, errorResponses, HttpError, validateOrThrow } from './errors.ts';

export const JOB_STATES = ['created', 'retry', 'active', 'completed', 'cancelled', 'failed'] as const;

const uuid = { type: 'string', format: 'uuid' } as const;
const nullableString = { type: ['string', 'null'] } as const;
const nullableDate = { type: ['string', 'null'], format: 'date-time' } as const;

export const jobSchema = {
  $id: 'job',
  type: 'object',
  properties: {
    id: uuid,
    queue: { type: 'string' },
    state: { type: 'string', enum: JOB_STATES },
    data: { description: 'the job data; for a search-sync job {table, id}: the row' },
    priority: { type: 'integer' },
    attempt: { type: 'integer', description: 'the attempt the job is on, or the last one it made' },
    retryLimit: { type: 'integer' },
    singletonKey: nullableString,
    startAfter: { type: 'string', format: 'date-time' },
    createdOn: { type: 'string', format: 'date-time' },
    startedOn: nullableDate,
    completedOn: nullableDate,
    output: { description: 'what the last attempt returned or failed with' },
    error: { ...nullableString, description: 'the last error as one line' },
    deadLetter: { ...nullableString, description: 'where the job goes when it runs out of attempts' },
    sourceQueue: { ...nullableString, description: 'for a dead letter, the queue it came from' },
    sourceJobId: nullableString,
  },
  required: ['id', 'queue', 'state', 'priority', 'attempt', 'retryLimit', 'startAfter', 'createdOn'],
} as const;

const jobRef = { $ref: 'job#' } as const;
const idParams = { type: 'object', properties: { id: uuid }, required: ['id'] } as const;

const enqueueOptionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    priority: { type: 'integer', minimum: -1_000_000, maximum: 1_000_000, description: 'higher runs first' },
    startAfter: {
      anyOf: [
        { type: 'string', format: 'date-time' },
        { type: 'integer', minimum: 0, maximum: 31_536_000 },
      ],
      description: 'an ISO 8601 date-time, or seconds from now',
    },
    singletonKey: { type: 'string', minLength: 1, maxLength: 512, description: 'for a search-sync queue, the row id (the default)' },
    retryLimit: { type: 'integer', minimum: 0, maximum: 100 },
  },
} as const;

interface ListQuery {
  queue?: string[];
  state?: string[];
  limit: number;
  cursor?: string;
}

interface EnqueueBody {
  queue: string;
  data: unknown;
  options?: EnqueueOptions;
}

/** The jobs of every registered queue: list, read, enqueue, retry, cancel. */
export const jobRoutes: FastifyPluginAsync = async (app) => {
  const { pool, boss, tables } = app.services;
  const queues = new Map(app.services.queues.map((q) => [q.name, q]));
  const names = [...queues.keys()];
  const dataValidators = compileDataSchemas([...queues.values()]);
  const keyValidators = new Map<string, KeyValidator | null>();
  const validateKey = async (table: string, id: string): Promise<string | null> => {
    if (!keyValidators.has(table)) {
      const synced = tables.find((t) => t.table === table)!;
      const { rows } = await pool.query<{ type: string }>(plans.keyType, [`${synced.schema}.${synced.table}`]);
      keyValidators.set(table, rows[0] ? keyValidator(rows[0].type) : null);
    }
    return keyValidators.get(table)?.(id) ?? null;
  };

  app.addSchema(jobSchema);

  app.get('/jobs', {
    schema: {
      tags: ['jobs'],
      summary: 'Jobs, newest first, filtered by queue and state, a page at a time',
      security: [{ bearer: [] }],
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          queue: { type: 'array', items: { type: 'string', enum: names }, maxItems: names.length, description: 'repeat for several: queue=a&queue=b' },
          state: { type: 'array', items: { type: 'string', enum: JOB_STATES }, maxItems: JOB_STATES.length, description: 'repeat for several: state=created&state=retry' },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          cursor: { type: 'string', maxLength: 200, description: 'nextCursor of the previous page' },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: { jobs: { type: 'array', items: jobRef }, nextCursor: nullableString },
          required: ['jobs', 'nextCursor'],
        },
        ...errorResponses(400, 401, 403, 503),
      },
    },
  }, async (request) => {
    const query = request.query as ListQuery;
    const result = await listJobs(pool, {
      queues: query.queue?.length ? query.queue : names,
      states: query.state?.length ? query.state : null,
      cursor: query.cursor ?? null,
      limit: query.limit,
    });
    return { jobs: result.items, nextCursor: result.nextCursor };
  });

  app.get('/jobs/:id', {
    schema: {
      tags: ['jobs'],
      summary: 'One job',
      security: [{ bearer: [] }],
      params: idParams,
      response: { 200: jobRef, ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (request) => {
    const { id } = request.params as { id: string };
    const job = await getJob(pool, id);
    if (!job) throw new HttpError(404, `no job with id ${id}`);
    return job;
  });

  app.post('/jobs', {
    schema: {
      tags: ['jobs'],
      summary: 'Enqueue a job into a registered queue',
      description: "data is validated against the queue's JSON Schema. A search-sync job without options joins a job already waiting for its row, as a write to the row would.",
      security: [{ bearer: [] }],
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['queue', 'data'],
        properties: {
          queue: { type: 'string', enum: names },
          data: { description: "the job data, as the queue's schema describes it" },
          options: enqueueOptionsSchema,
        },
      },
      response: {
        201: {
          type: 'object',
          properties: { id: uuid, coalesced: { type: 'boolean', description: 'true when a job already waiting for the row took this one in' } },
          required: ['id', 'coalesced'],
        },
        ...errorResponses(400, 401, 403, 409, 503),
      },
    },
  }, async (request, reply) => {
    const body = request.body as EnqueueBody;
    const queue = queues.get(body.queue)!;
    validateOrThrow(dataValidators.get(queue.name)!, body.data, 'body/data');
    if (queue.kind === 'sync') {
      const { table, id } = body.data as { table: string; id: string };
      const problem = await validateKey(table, id);
      if (problem) throw new HttpError(400, `body/data/id must be a key of ${table}: ${problem}`);
    }
    const result = await enqueue(pool, boss, queue, body.data, body.options ?? {});
    request.log.info({ queue: queue.name, job: result.id, coalesced: result.coalesced }, 'job enqueued through the API');
    return reply.code(201).send(result);
  });

  app.put('/jobs/:id/retry', {
    schema: {
      tags: ['jobs'],
      summary: 'Retry a failed job (its dead-letter copy is removed: the retry replaces it)',
      security: [{ bearer: [] }],
      params: idParams,
      response: { 200: jobRef, ...errorResponses(400, 401, 403, 404, 409, 503) },
    },
  }, async (request) => {
    const { id } = request.params as { id: string };
    const job = await retryJob(pool, id);
    request.log.info({ queue: job.queue, job: id }, 'failed job retried through the API');
    return job;
  });

  app.delete('/jobs/:id', {
    schema: {
      tags: ['jobs'],
      summary: 'Cancel a queued job (created or retry)',
      security: [{ bearer: [] }],
      params: idParams,
      response: { 200: jobRef, ...errorResponses(400, 401, 403, 404, 409, 503) },
    },
  }, async (request) => {
    const { id } = request.params as { id: string };
    const job = await cancelJob(pool, id);
    request.log.info({ queue: job.queue, job: id }, 'queued job cancelled through the API');
    return job;
  });
};

function compileDataSchemas(queues: QueueConfig[]): Map<string, ValidateFunction> {
  const { json } = createValidators();
  return new Map(queues.map((q) => [q.name, json.compile(q.dataSchema)]));
}
