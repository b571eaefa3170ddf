import { PgBoss, type ConstructorOptions } from 'pg-boss';
import type { Test } from 'tap';

/** A pg-boss instance on the test database that only does what a test asks of it. */
export async function startBoss(t: Test, url: string, options: Partial<ConstructorOptions> = {}): Promise<PgBoss> {
  const boss = new PgBoss({ connectionString: url, migrate: false, supervise: false, schedule: false, registerInstance: false, max: 4, ...options });
  boss.on('error', () => {});
  await boss.start();
  t.teardown(() => boss.stop({ graceful: false, timeout: 1000 }));
  return boss;
}
