import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { Logger } from '../config/logger.ts';

/**
 * The triggers notify at most once per queue every 20 ms (see migrations/001_queue_schema.sql), so
 * a write whose notify was skipped can commit just after the worker woken by the previous one has
 * already looked. This follower listens on the same channel and wakes the queue's workers again a
 * little later, which catches those writes without the cost of a NOTIFY each.
 */
export const FOLLOW_UP_DELAYS_MS = [50, 500];

export class WakeupFollower {
  #client: pg.Client | null = null;
  #timers = new Map<string, NodeJS.Timeout[]>();
  #stopped = false;
  readonly #databaseUrl: string;
  readonly #boss: PgBoss;
  readonly #queues: Set<string>;
  readonly #log: Logger;

  constructor(databaseUrl: string, boss: PgBoss, queues: string[], log: Logger) {
    this.#databaseUrl = databaseUrl;
    this.#boss = boss;
    this.#queues = new Set(queues);
    this.#log = log;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#connect();
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#databaseUrl, application_name: 'queue-service wakeup' });
    client.on('error', (err) => {
      this.#log.warn({ err: err.message }, 'wake-up listener lost its connection; reconnecting');
      this.#reconnectLater();
    });
    client.on('notification', (msg) => {
      if (msg.payload && this.#queues.has(msg.payload)) this.#followUp(msg.payload);
    });
    await client.connect();
    const { rows } = await client.query<{ channel: string }>('SELECT queue.notify_channel() AS channel');
    await client.query(`LISTEN "${rows[0]!.channel}"`);
    this.#client = client;
  }

  #reconnectLater(): void {
    const dead = this.#client;
    this.#client = null;
    dead?.end().catch(() => {});
    if (this.#stopped) return;
    setTimeout(() => {
      if (this.#stopped) return;
      this.#connect().catch((err: Error) => {
        this.#log.warn({ err: err.message }, 'wake-up listener could not reconnect; trying again');
        this.#reconnectLater();
      });
    }, 1000).unref();
  }

  #followUp(queue: string): void {
    if (this.#timers.has(queue)) return;
    const timers = FOLLOW_UP_DELAYS_MS.map((delay, i) =>
      setTimeout(() => {
        this.#wake(queue);
        if (i === FOLLOW_UP_DELAYS_MS.length - 1) this.#timers.delete(queue);
      }, delay),
    );
    this.#timers.set(queue, timers);
  }

  #wake(queue: string): void {
    for (const worker of this.#boss.getWipData()) {
      if (worker.name === queue) this.#boss.notifyWorker(worker.id);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timers of this.#timers.values()) timers.forEach(clearTimeout);
    this.#timers.clear();
    await this.#client?.end().catch(() => {});
    this.#client = null;
  }
}
