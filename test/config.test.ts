import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import t from 'tap';
import { ConfigError, readEnv } from '../src/config/env.ts';
import { queueConfigs } from '../src/config/queues.ts';
import { packageRoot } from '../src/config/paths.ts';
import { withEnvTable } from '../scripts/env-table.ts';
import { createTestDatabase, sleep } from './helpers/database.ts';
import { fakeSearch } from './helpers/search.ts';
import { spawnService } from './helpers/service.ts';

t.test('the README configuration reference is the config schema', async (t) => {
  const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
  t.equal(withEnvTable(readme), readme, 'README.md is up to date (run npm run docs:env)');
});

t.test('every bad variable is named at once', async (t) => {
  const err = t.throws(() =>
    readEnv({ DATABASE_URL: 'mysql://x', PORT: 'eighty', SYNC_BATCH_SIZE: '0', LOG_LEVEL: 'loud', MIGRATE_ON_START: 'maybe', ELASTICSEARCH_URL: 'not a url' }),
  ) as ConfigError;
  t.type(err, ConfigError);
  t.match(err.problems, [
    /DATABASE_URL must use postgres: or postgresql:, got mysql:/,
    /ELASTICSEARCH_URL is not a valid URL/,
    /PORT must be a whole number, got "eighty"/,
    /LOG_LEVEL must be one of/,
    /MIGRATE_ON_START must be true or false, got "maybe"/,
    /SYNC_BATCH_SIZE must be between 1 and 10000, got 0/,
  ]);
});

t.test('settings that contradict each other are refused', async (t) => {
  t.throws(() => readEnv({ DB_STATEMENT_TIMEOUT_MS: '90000', SYNC_EXPIRE_SECONDS: '60' }), { message: /DB_STATEMENT_TIMEOUT_MS must be shorter than SYNC_EXPIRE_SECONDS/ });
  t.throws(() => readEnv({ ELASTICSEARCH_USERNAME: 'elastic' }), { message: /ELASTICSEARCH_PASSWORD must be set when ELASTICSEARCH_USERNAME is/ });
});

t.test('a queue override for a queue that does not exist is refused, naming the variable', async (t) => {
  const env = readEnv({ QUEUE_OVERRIDES: '{"search-sync.listing":{"batchSize":10}}' });
  t.throws(() => queueConfigs(env), { message: /QUEUE_OVERRIDES names unknown queue "search-sync.listing"/ });
  const bad = readEnv({ QUEUE_OVERRIDES: '{"search-sync.listings":{"batchSize":"ten","speed":1}}' });
  t.throws(() => queueConfigs(bad), { message: /QUEUE_OVERRIDES\["search-sync.listings"\].batchSize must be a whole number[\s\S]*speed is not a setting/ });
  t.throws(() => readEnv({ QUEUE_OVERRIDES: '{oops' }), { message: /QUEUE_OVERRIDES is not valid JSON/ });
});

t.test('start refuses to run with a bad environment, naming each variable, without a stack trace', async (t) => {
  const child = spawn(process.execPath, [join(packageRoot, 'src/cli/main.ts'), 'start'], {
    env: { ...process.env, DATABASE_URL: 'postgres://localhost/x', ELASTICSEARCH_URL: 'ftp://es', SYNC_CONCURRENCY: '-1' },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => child.on('close', resolve));
  t.equal(code, 1);
  t.match(stderr, /ELASTICSEARCH_URL must use http: or https:, got ftp:/);
  t.match(stderr, /SYNC_CONCURRENCY must be between 1 and 64, got -1/);
  t.notMatch(stderr, /\n\s+at /);
});

t.test('secrets never appear in the logs', async (t) => {
  const db = await createTestDatabase(t);
  const { fake } = await fakeSearch(t);
  const url = new URL(db.url);
  url.password = 'hunter2-database-secret';
  const secrets = { DATABASE_URL: url.toString(), API_TOKEN: 'api-token-secret-0123456789', ELASTICSEARCH_API_KEY: 'elastic-api-key-secret' };
  const service = spawnService(t, db, fake.url, { ...secrets, LOG_LEVEL: 'trace' });
  await service.url;
  await db.query(`INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), 'logged', 1)`);
  await sleep(1500);
  service.child.kill('SIGTERM');
  await service.exited;
  const output = service.output();
  t.match(output, /batch synced/, 'the log has the service at work');
  for (const secret of ['hunter2-database-secret', 'api-token-secret-0123456789', 'elastic-api-key-secret']) {
    t.notOk(output.includes(secret), `${secret.split('-')[0]} secret not logged`);
  }
});

t.test('a server without autovacuum gets one warning at start, naming the fix', async (t) => {
  const { fake } = await fakeSearch(t);
  const db = await createTestDatabase(t);
  const [setting] = await db.query<{ autovacuum: string }>('SHOW autovacuum');
  const service = spawnService(t, db, fake.url);
  await service.url;
  service.child.kill('SIGTERM');
  await service.exited;
  const warnings = service.output().split('\n').filter((line) => line.includes('autovacuum is off'));
  if (setting!.autovacuum === 'on') t.equal(warnings.length, 0, 'autovacuum is on: no warning');
  else t.match(warnings, [/"level":40.*ALTER SYSTEM SET autovacuum = on/], 'autovacuum is off: one warning');
});
