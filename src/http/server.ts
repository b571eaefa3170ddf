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
import { healthRoutes } from './health.ts';
import { metricsRoutes } from './metrics.ts';

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
  });
  app.decorate('services', services);
  await app.register(healthRoutes);
  await app.register(metricsRoutes);
  return app;
}
