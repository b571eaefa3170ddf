import type { FastifyInstance } from 'fastify';
import { PgBoss } from 'pg-boss';
import type { Env } from '../config/env.ts';
import { describeDatabaseUrl, type Logger } from '../config/logger.ts';
import { queueConfigs, SYNC_TABLES, type TaskQueue } from '../config/queues.ts';
import { migrate } from '../db/migrate.ts';
import * as plans from '../db/plans.ts';
import { createPool, type Pool } from '../db/pool.ts';
import { buildServer } from '../http/server.ts';
import type { TaskHandler } from '../jobs/handler.ts';
import { TaskService } from '../jobs/service.ts';
import { searchClientFromEnv, type SearchClient } from '../search/client.ts';
import { Metrics } from '../sync/metrics.ts';
import { SyncService } from '../sync/service.ts';
import { ScheduledReconcile } from '../tools/scheduled-reconcile.ts';

export interface RunningService {
  app: FastifyInstance;
  boss: PgBoss;
  pool: Pool;
  sync: SyncService;
  tasks: TaskService;
  /** The address the HTTP server listens on. */
  url: string;
  /** Stops claiming, waits for batches in flight, closes everything. */
  stop(): Promise<void>;
}

/** How long a graceful stop waits for batches in flight before pg-boss gives up on them. */
const DRAIN_TIMEOUT_MS = 30_000;

export interface ServiceOptions {
  /** The task queues; TASK_QUEUES by default. Tests add queues of their own with these two. */
  tasks?: readonly TaskQueue[];
  /** Handlers given in code; by default each comes from src/jobs/handlers/<queue>.ts. */
  handlers?: readonly TaskHandler[];
}

/**
 * Every job leaves dead row versions behind it (created, active, completed); without autovacuum
 * pg-boss's job table fills with them and each claim reads through more of them. The service
 * works on, slower by the hour, so say it once, at start, where the operator looks.
 */
async function warnWithoutAutovacuum(pool: Pool, log: Logger): Promise<void> {
  // Best effort: if the database cannot answer yet, pg-boss's start below says so.
  const rows = await pool.query<{ autovacuum: string }>(plans.autovacuumSetting).then((r) => r.rows, () => null);
  if (!rows || rows[0]?.autovacuum === 'on') return;
  log.warn('autovacuum is off on this server: the job tables will bloat and claiming jobs will slow down; turn it on (ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf())');
}

export async function runService(env: Env, databaseUrl: string, log: Logger, options: ServiceOptions = {}): Promise<RunningService> {
  log.info({ database: describeDatabaseUrl(databaseUrl), elasticsearch: env.elasticsearchUrl ?? null }, 'starting');
  const queues = queueConfigs(env, options.tasks);
  if (env.migrateOnStart) await migrate(databaseUrl, env, log, { tasks: options.tasks });

  const pool = createPool(databaseUrl, { max: env.dbPoolMax, statementTimeoutMs: env.dbStatementTimeoutMs, applicationName: 'queue-service' }, log);
  await warnWithoutAutovacuum(pool, log);
  const boss = new PgBoss({
    connectionString: databaseUrl,
    max: env.dbPoolMax,
    migrate: false,
    useListenNotify: true,
    superviseIntervalSeconds: env.superviseIntervalSeconds,
    monitorIntervalSeconds: env.superviseIntervalSeconds,
    maintenanceIntervalSeconds: env.maintenanceIntervalSeconds,
    application_name: 'queue-service pg-boss',
  });
  boss.on('error', (err: Error & { queue?: string }) => log.warn({ err: err.message, queue: err.queue }, 'pg-boss error'));
  await boss.start();

  const metrics = new Metrics();
  const search: SearchClient | null = searchClientFromEnv(env);
  const sync = new SyncService({ databaseUrl, env, pool, boss, search, metrics, log });
  // The other queues' workers (email, export, ...), beside search sync in the same process.
  const tasks = new TaskService({ env, pool, boss, metrics, log, queues: queues.filter((q) => q.kind === 'task'), handlers: options.handlers });
  const app = await buildServer({ env, pool, boss, search, sync, tasks, queues, metrics, tables: SYNC_TABLES }, log);
  const url = await app.listen({ port: env.port, host: env.host });
  log.info({ url }, 'http listening');
  sync.start();
  await tasks.start();
  const reconcile = new ScheduledReconcile({ boss, pool, search, env, log: log.child({ component: 'reconcile' }) });
  await reconcile.start();

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      await app.close();
      await reconcile.stop();
      await sync.stop();
      await tasks.stop();
      await boss.stop({ graceful: true, timeout: DRAIN_TIMEOUT_MS });
      await search?.close();
      await pool.end();
    })());
  return { app, boss, pool, sync, tasks, url, stop };
}

/**
 * The first SIGTERM or SIGINT drains and exits 0; a second one exits at once. Node runs the
 * service directly in the container (no npm in between), so the signal reaches this process.
 */
export function exitOnSignals(service: RunningService, log: Logger): Promise<number> {
  return new Promise((resolve) => {
    let received = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      received++;
      if (received > 1) {
        log.warn({ signal }, 'second signal: exiting without waiting for batches in flight');
        process.exit(signal === 'SIGINT' ? 130 : 143);
      }
      log.info({ signal }, 'shutting down: no new jobs are claimed; waiting for batches in flight');
      service.stop().then(
        () => {
          log.info('stopped cleanly');
          resolve(0);
        },
        (err: Error) => {
          log.error({ err: err.message }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
