import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

/**
 * OpenAPI from the routes' own JSON schemas. Registered before the routes (swagger collects them
 * as they are added); the UI at /docs and the document at /docs/json are open, like /health.
 */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Queue Service',
        description:
          'Postgres-native job queue: search-sync jobs from database triggers, with retries and dead-letter queues. ' +
          'Every /api/v1 route needs `Authorization: Bearer <API_TOKEN>`. Errors are `{statusCode, error, message}`.',
        version: '1',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'the API_TOKEN' } } },
      tags: [
        { name: 'queue', description: 'The stats views' },
        { name: 'jobs', description: 'Jobs of every registered queue' },
        { name: 'dead letters', description: 'Jobs that ran out of attempts' },
        { name: 'dashboard', description: 'The web dashboard and its sign-in' },
        { name: 'health', description: 'Liveness, readiness and Prometheus metrics (no token)' },
      ],
    },
  });
}

export async function registerDocsUi(app: FastifyInstance): Promise<void> {
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
}
