/**
 * `npm run bench [-- <bench> ...]`: one throw-away database, the API started as `npm start`
 * starts it (ROLE=api), each selected benchmark run against it, a table of every figure beside
 * its target or baseline, and the results as JSON in bench/results/<bench>-<time>.json.
 *
 * Exit status: 0 when every phase ran cleanly, whether or not targets were met (benchmarks
 * measure, they do not assert); 1 when a phase failed (non-2xx answers, wrong counts, a crash).
 *
 * Environment: BENCH_ONLY=a,b,c (ingest phases), BENCH_KEEP_DATABASE=1 (leave the run's database
 * behind, to replay its statements), BENCH_CPU_PROFILE=1 (profile the API with
 * --cpu-prof and print where its CPU time went, per phase), BENCH_API_ENV="K=V K2=V2" (extra
 * environment for the API, to compare settings such as DB_POOL_SIZE or INGEST_MAX_GROUP_SIZE),
 * BENCH_API_NODE_ARGS="--flag ..." (extra node flags for the API, before npm start's own, e.g.
 * --trace-gc; a flag npm start also sets is overridden by npm start's), and the sizes in bench/ingest.ts.
 */
import os from 'node:os';
import path from 'node:path';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import pg from 'pg';
import {
  type BenchContext,
  type BenchReport,
  type ProfileSummary,
  type StartedServer,
  RESULTS_DIR,
  createDatabase,
  deleteRedisKeys,
  databaseUrl,
  dropDatabase,
  randomAlphanumeric,
  renderFigures,
  renderPhases,
  renderTable,
  startCommand,
  startServer,
  stopServer,
  summarizeCpuProfile,
  verdict,
  writeResults,
} from './lib';

/**
 * The benchmarks by name, each loaded only when asked for: `npm run bench:alternate` runs this
 * file against an older checkout whose src/ lacks what newer benchmarks import.
 */
const BENCHES: Record<string, (ctx: BenchContext) => Promise<BenchReport>> = {
  ingest: async (ctx) => { const b = await import('./ingest'); return b.runIngestBench(ctx, b.ingestConfigFromEnv()); },
  rollups: async (ctx) => { const b = await import('./rollups'); return b.runRollupBench(ctx, b.rollupConfigFromEnv()); },
  analytics: async (ctx) => { const b = await import('./analytics'); return b.runAnalyticsBench(ctx, b.analyticsConfigFromEnv()); },
  quota: async (ctx) => { const b = await import('./quota'); return b.runQuotaBench(ctx, b.quotaConfigFromEnv()); },
  sdk: async (ctx) => { const b = await import('./sdk'); return b.runSdkBench(ctx, b.sdkConfigFromEnv()); },
  billing: async (ctx) => { const b = await import('./billing'); return b.runBillingBench(ctx, b.billingConfigFromEnv()); },
  scale: async (ctx) => { const b = await import('./scale'); return b.runScaleBench(ctx, b.scaleConfigFromEnv()); },
  'scale-pg': async (ctx) => { const b = await import('./scale-pg'); return b.runScalePgBench(ctx, b.scalePgConfigFromEnv()); },
  'scale-redis': async (ctx) => { const b = await import('./scale-redis'); return b.runScaleRedisBench(ctx, b.scaleRedisConfigFromEnv()); },
  'unique-users': async (ctx) => { const b = await import('./unique-users'); return b.runUniqueUsersBench(ctx, b.uniqueUsersConfigFromEnv()); },
  web: async (ctx) => { const b = await import('./web'); return b.runWebBench(ctx, b.webConfigFromEnv()); },
};

async function environmentFacts(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const facts: Record<string, string> = {};
    for (const name of ['server_version', 'shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size']) {
      facts[name] = (await client.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name]!;
    }
    return facts;
  } finally {
    await client.end();
  }
}

function printProfile(phase: string, summary: ProfileSummary): void {
  console.log(`\nAPI CPU profile, ${phase} (${summary.totalMs} ms of samples)`);
  console.log(
    renderTable(
      ['self time by package / file', 'ms', '%'],
      summary.byOwner.slice(0, 12).map((o) => [o.where, String(o.ms), String(o.pct)]),
      [false, true, true],
    ),
  );
  console.log(
    renderTable(
      ['self time by function', 'where', 'ms', '%'],
      summary.bySelfTime.slice(0, 15).map((f) => [f.fn, f.where, String(f.ms), String(f.pct)]),
      [false, false, true, true],
    ),
  );
}

async function main(): Promise<number> {
  const requested = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const names = requested.length ? requested : Object.keys(BENCHES);
  const unknown = names.filter((n) => !BENCHES[n]);
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(BENCHES).join(', ')}`);
    return 2;
  }

  const apiEnv = Object.fromEntries(
    (process.env.BENCH_API_ENV ?? '')
      .split(/\s+/)
      .filter(Boolean)
      .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
  );
  const startedAt = new Date();
  const runId = `${startedAt.getTime().toString(36)}${randomAlphanumeric(4).toLowerCase()}`;
  const dbName = `tally_bench_${startedAt.getTime()}`;
  const url = databaseUrl(dbName);
  const stamp = startedAt.toISOString().replace(/:/g, '-');
  // Profiles are written to a temporary directory; the main thread's is kept as
  // bench/results/api-<time>.cpuprofile.json (ignored by git like the other results).
  const profileDir = process.env.BENCH_CPU_PROFILE === '1' ? await mkdtemp(path.join(os.tmpdir(), 'tally-bench-prof-')) : undefined;
  let keptProfile: string | undefined;

  let server: StartedServer | undefined;
  let cleanedUp: Promise<void> | undefined;
  let serverExit: number | null = null;
  const cleanup = () =>
    (cleanedUp ??= (async () => {
      if (server) serverExit = await stopServer(server);
      if (server) await deleteRedisKeys(server.redisKeyPrefix).catch(() => undefined);
      if (process.env.BENCH_KEEP_DATABASE === '1') console.log(`kept the database ${dbName} (BENCH_KEEP_DATABASE=1)`);
      else await dropDatabase(dbName).catch((err: unknown) => console.error(`could not drop ${dbName}: ${String(err)}`));
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: stopping the API and dropping ${dbName}`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const reports: BenchReport[] = [];
  const failures: string[] = [];
  let facts: Record<string, string> = {};
  try {
    await createDatabase(dbName);
    if (names.includes('web')) {
      // npm start would build a missing or stale console bundle itself; built here first, so the
      // API's start-up is not waited for through a Vite build.
      const { ensureConsoleBundle } = await import('../src/server/console/bundle');
      const bundle = ensureConsoleBundle(process.env.CONSOLE_DIST_DIR ?? 'web/dist', (m) => console.log(m));
      if (bundle.state === 'missing' || bundle.state === 'stale') throw new Error(bundle.reason);
    }
    console.log(`database ${dbName}; starting the API (ROLE=api)${profileDir ? ' with --cpu-prof' : ''}…`);
    server = await startServer({
      databaseUrl: url,
      env: apiEnv,
      nodeArgs: [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), ...(process.env.BENCH_API_NODE_ARGS ?? '').split(/\s+/).filter(Boolean)],
    });
    facts = await environmentFacts(url);
    for (const name of names) {
      console.log(`running ${name}…`);
      try {
        reports.push(await BENCHES[name]!({ server, databaseUrl: url, runId }));
      } catch (error) {
        failures.push(`${name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
    }
  } catch (error) {
    failures.push(`setup: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  } finally {
    await cleanup();
  }
  if (server && serverExit !== 0) failures.push(`the API exited with ${serverExit} on SIGTERM:\n${server.output().slice(-3000)}`);
  else if (server?.output().trim()) console.log(`\nAPI output (LOG_LEVEL=warn):\n${server.output().trim().slice(-3000)}`);

  const profiles: Record<string, ProfileSummary> = {};
  if (profileDir) {
    // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread.
    const files = (await readdir(profileDir).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile'));
    const file = files.find((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f)) ?? files[0];
    if (!file) failures.push(`no .cpuprofile was written to ${profileDir}`);
    else {
      for (const report of reports)
        for (const phase of report.phases)
          if (phase.resources.window.toUs > 0) profiles[`${report.name} ${phase.name}`] = await summarizeCpuProfile(path.join(profileDir, file), phase.resources.window);
      await mkdir(RESULTS_DIR, { recursive: true });
      keptProfile = path.join(RESULTS_DIR, `api-${stamp}.cpuprofile.json`);
      await copyFile(path.join(profileDir, file), keptProfile);
    }
    await rm(profileDir, { recursive: true, force: true });
  }

  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GB, node ${process.version}, PostgreSQL ${facts.server_version ?? '?'}`;
  for (const report of reports) {
    console.log(`\n== ${report.name} (${machine}) ==\n`);
    console.log(renderFigures(report.figures));
    console.log(`\n${renderPhases(report.phases)}`);
    for (const phase of report.phases) for (const e of phase.errors) failures.push(`${report.name} ${phase.name}: ${e}`);
    const file = await writeResults(report.name, startedAt, {
      bench: report.name,
      startedAt: startedAt.toISOString(),
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version, postgres: facts },
      api: { command: startCommand().text, env: { ROLE: 'api', LOG_LEVEL: 'warn', ...apiEnv }, cpuProfile: Boolean(profileDir), exitCode: serverExit },
      config: report.config,
      figures: report.figures.map((f) => ({ ...f, verdict: verdict(f) || undefined })),
      phases: report.phases,
      extra: report.extra,
      profiles: Object.fromEntries(Object.entries(profiles).filter(([k]) => k.startsWith(`${report.name} `))),
      errors: failures.filter((f) => f.startsWith(`${report.name} `)),
    });
    console.log(`\nresults: ${path.relative(process.cwd(), file)}`);
  }
  for (const [phase, summary] of Object.entries(profiles)) printProfile(phase, summary);
  if (keptProfile) console.log(`\nAPI CPU profile (load in Chrome DevTools, Performance panel): ${path.relative(process.cwd(), keptProfile)}`);

  if (failures.length) {
    console.error(`\n${failures.length} failure(s):\n${failures.map((f) => `- ${f}`).join('\n')}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
