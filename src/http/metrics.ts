import type { FastifyPluginAsync } from 'fastify';

/** Prometheus text format; scrape it without a token, as Prometheus expects. */
export const metricsRoutes: FastifyPluginAsync = async (app) => {
  app.get('/metrics', {
    schema: { tags: ['health'], summary: 'Prometheus metrics', response: { 200: { type: 'string' } } },
  }, async (_request, reply) => {
    const { metrics } = app.services;
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
};
