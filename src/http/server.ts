import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { PgBoss } from 'pg-boss';
import type { Env } from '../config/env.ts';
import type { Logger } from '../config/logger.ts';
import type { QueueConfig, SyncTable } from '../config/queues.ts';
import type { Pool } from '../db/pool.ts';
import type { SearchClient } from '../search/client.ts';
import type { Metrics } from '../sync/metrics.ts';
import type { SyncService } from '../sync/service.ts';
import type { TaskService } from '../jobs/service.ts';
import { Auth, requireApiAuth } from './auth.ts';
import { dashboardRoutes } from './dashboard.ts';
import { deadLetterRoutes } from './dead-letters.ts';
import { registerDocsUi, registerOpenApi } from './docs.ts';
import { buildValidator, errorSchema, installErrorHandler } from './errors.ts';
import { healthRoutes } from './health.ts';
import { jobRoutes } from './jobs.ts';
import { metricsRoutes } from './metrics.ts';
import { statsRoutes } from './stats.ts';

/** What the routes use, attached once with `decorate` rather than imported as singletons. */
export interface Services {
  env: Env;
  pool: Pool;
  boss: PgBoss;
  search: SearchClient | null;
  sync: SyncService;
  /** The workers of the task queues (email, export, ...). */
  tasks: TaskService;
  /** Every queue of the registry, queueConfigs(env) with the task queues the service runs. */
  queues: readonly QueueConfig[];
  metrics: Metrics;
  tables: readonly SyncTable[];
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

export async function buildServer(services: Services, log: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger,
    // One line per request would bury the lines worth reading; the routes that change state log
    // what they did, and errors are logged as they happen.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1_048_576,
    schemaController: { compilersFactory: { buildValidator } },
  });
  app.decorate('services', services);
  installErrorHandler(app);
  app.addSchema(errorSchema);

  const auth = new Auth(services.env.apiToken, services.env.dashboardSessionSeconds);
  await app.register(cookie);
  // Cross-origin browser calls are refused unless origins are configured; the dashboard is
  // same-origin and needs none. Credentials (the session cookie) never cross origins.
  if (services.env.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: services.env.corsOrigins,
      methods: ['GET', 'POST', 'PUT', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type'],
      credentials: false,
      maxAge: 600,
    });
  }

  await registerOpenApi(app);
  await app.register(healthRoutes);
  await app.register(metricsRoutes);
  await app.register(async (api) => {
    api.addHook('onRequest', requireApiAuth(auth));
    await api.register(statsRoutes);
    await api.register(jobRoutes);
    await api.register(deadLetterRoutes);
  }, { prefix: '/api/v1/queue' });
  await app.register(dashboardRoutes, { prefix: '/dashboard', auth });
  await registerDocsUi(app);
  return app;
}
