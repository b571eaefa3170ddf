import type { TaskQueueState } from '../jobs/service.ts';
import type { FastifyPluginAsync } from 'fastify';

const checkSchema = {
  type: 'object',
  properties: { ok: { type: 'boolean' }, detail: { type: 'string' } },
  required: ['ok', 'detail'],
} as const;

const readySchema = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['ready', 'not_ready'] },
    reasons: { type: 'array', items: { type: 'string' } },
    checks: {
      type: 'object',
      properties: {
        database: checkSchema,
        elasticsearch: checkSchema,
        workers: checkSchema,
        queues: {
          type: 'object',
          description: 'The task queues (email, export, ...): a queue paused for missing configuration keeps its jobs waiting and does not fail readiness; one whose handler failed to start does.',
          properties: {
            ok: { type: 'boolean' },
            detail: { type: 'string' },
            states: {
              type: 'array',
              items: {
                type: 'object',
                properties: { queue: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string' } },
                required: ['queue', 'status'],
              },
            },
          },
          required: ['ok', 'detail', 'states'],
        },
      },
      required: ['database', 'elasticsearch', 'workers', 'queues'],
    },
  },
  required: ['status', 'reasons', 'checks'],
} as const;

interface Check {
  ok: boolean;
  detail: string;
}

const PROBE_TIMEOUT_MS = 2000;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} did not answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS).unref()),
  ]);
}

/** Liveness and readiness: /health says the process serves; /ready says it can do its job. */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/health', {
    schema: {
      tags: ['health'],
      summary: 'Liveness: 200 while the process serves',
      response: { 200: { type: 'object', properties: { status: { type: 'string' } }, required: ['status'] } },
    },
  }, async () => ({ status: 'ok' }));

  app.get('/ready', {
    schema: {
      tags: ['health'],
      summary: 'Readiness: 200 when the database and Elasticsearch answer and the sync workers run; 503 with the reasons',
      response: { 200: readySchema, 503: readySchema },
    },
  }, async (_request, reply) => {
    const [database, elasticsearch] = await Promise.all([checkDatabase(), checkSearch()]);
    const workers = checkWorkers();
    const queues = checkQueues();
    const checks = { database, elasticsearch, workers, queues };
    const reasons = Object.values(checks).filter((c) => !c.ok).map((c) => c.detail);
    return reply.code(reasons.length ? 503 : 200).send({ status: reasons.length ? 'not_ready' : 'ready', reasons, checks });
  });

  async function checkDatabase(): Promise<Check> {
    try {
      await withTimeout(app.services.pool.query('SELECT 1'), 'the database');
      return { ok: true, detail: 'database answers' };
    } catch (err) {
      return { ok: false, detail: `database: ${(err as Error).message}` };
    }
  }

  async function checkSearch(): Promise<Check> {
    const { sync, search } = app.services;
    const state = sync.state;
    if (state.status === 'not_configured') {
      return { ok: false, detail: 'ELASTICSEARCH_URL is not set: search sync is paused and jobs stay queued until it is set' };
    }
    if (state.status === 'connecting') {
      return { ok: false, detail: `Elasticsearch is not reachable yet${state.lastError ? ` (${state.lastError})` : ''}: sync waits, jobs stay queued` };
    }
    try {
      await withTimeout(search!.ping(), 'Elasticsearch');
      return { ok: true, detail: 'Elasticsearch answers' };
    } catch (err) {
      return { ok: false, detail: `Elasticsearch does not answer: ${(err as Error).message}` };
    }
  }

  function checkQueues(): Check & { states: TaskQueueState[] } {
    const states = app.services.tasks.states;
    const failed = states.filter((s) => s.status === 'failed' || s.status === 'starting');
    const paused = states.filter((s) => s.status === 'paused');
    const running = states.filter((s) => s.status === 'running').length;
    const reasons = [...failed, ...paused].map((s) => ('reason' in s ? s.reason : `${s.queue}: ${s.status}`));
    const detail = [`${running} of ${states.length} task queues running`, ...reasons].join('; ');
    return { ok: failed.length === 0, detail, states };
  }

  function checkWorkers(): Check {
    const { sync, tables } = app.services;
    const running = sync.workersRunning;
    return running === tables.length
      ? { ok: true, detail: `${running} sync workers running` }
      : { ok: false, detail: `${running} of ${tables.length} sync workers running` };
  }
};
