import type { FastifyPluginAsync } from 'fastify';
import { readGauges } from '../db/jobs.ts';

/**
 * Prometheus text format; scrape it without a token, as Prometheus expects. Besides what this
 * process counts, every scrape reads the queues' gauges from the database (queue.queue_gauges():
 * the live jobs per state, the dead letters, the oldest waiting job), so any replica reports the
 * whole queue and the numbers agree with queue.stats.
 */
export const metricsRoutes: FastifyPluginAsync = async (app) => {
  const { metrics, pool } = app.services;
  metrics.trackQueues(() => readGauges(pool), (err) => app.log.warn({ err: err.message }, 'queue gauges not read for /metrics'));

  app.get('/metrics', {
    schema: { tags: ['health'], summary: 'Prometheus metrics', produces: ['text/plain'], response: { 200: { type: 'string' } } },
  }, async (_request, reply) => {
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
};
