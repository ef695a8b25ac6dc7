/**
 * SDK and middleware benchmark (issue 14): `npm run bench -- sdk`.
 *
 * 1. Middleware overhead, `enforce: false`: one trivial Express route served twice in this process,
 *    bare and behind `tallyExpress` (every request billed through the buffered `track`, really sent
 *    to the API), driven by keep-alive clients in alternating rounds (A B A B …) so drift in the
 *    machine's load hits both alike. Figures: p99 added, throughput with ÷ without, each the
 *    median over the pairs of rounds run next to each other (12 pairs of 1 s rounds; at the fixed
 *    rate 8 pairs of 3 s rounds), the figure over all rounds beside it: this machine's speed moves
 *    by up to half within seconds, and a pair's two rounds share those seconds (see Overhead.pairs).
 *    The same two at a fixed rate, half the bare route's throughput just measured (open loop: each
 *    request sent when due, whether or not earlier ones were answered; its latency counted from
 *    when it was due), rounds alternated: the p99 a request gains from the middleware on an app
 *    with headroom. At saturation a closed loop's latency is clients ÷ throughput, so its p99 gap
 *    follows the throughput gap (the figure above), and is reported, not judged.
 *    The same comparison again on Fastify (`tallyFastify`): Express's own request handling keeps
 *    so much of each request past a young-generation collection (~4 MB promoted per scavenge at
 *    2,300 req/s, scavenges of 4-14 ms, none of it the middleware's) that its bare route's p99 at
 *    half load is 15-30 ms here, against ~4 ms for plain node:http and ~7 ms for Fastify; a 1 ms
 *    difference is measurable only on a route without that tail.
 * 2. `enforce: true`, check cache off: one client alternating bare and enforced calls (no queueing),
 *    p50 added, beside the p50 of one `usage.check` round trip from the same process.
 * 3. SDK throughput into Tally: N events through `tally.track` and `flush`, from the first track to
 *    the last answer, beside N events of the same shape sent as raw 1,000-event `usage.trackEvents`
 *    calls by 4 clients (the method of ingest (a)), in rounds SDK, raw, raw, SDK of N/2 events.
 *    Both counts are checked in PostgreSQL.
 *
 * The load generator shares this process with the served app (and the machine with the API and
 * PostgreSQL); both variants of each comparison pay that alike. During the overhead comparisons
 * the API's threads and its PostgreSQL backends run at nice 19 (BENCH_SDK_TALLY_NICE; 0 for equal
 * priority): the billed variant's events are really ingested and stored, but the bursts of CPU a
 * batch costs Tally on these shared two cores do not land on the app being measured, as they
 * would not with Tally on its own machine (see placeTally); they are also kept on the last CPU
 * (BENCH_SDK_TALLY_CPUS), so that the scheduler does not run them on the app's core. The
 * middleware's clients send with `fetch: workerFetch()` (`@tally/sdk/node`, the setup the README
 * gives Node servers), so a batch's send (its few hundred KB copied, written to the socket, the
 * answer read) runs on a worker thread, not between the app's requests; BENCH_SDK_TRANSPORT=fetch
 * measures the client's default, the runtime's fetch on the app's thread. The SDK measured is the
 * package as built for publishing (sdk/dist), rebuilt from sdk/src at the start of the run.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import express from 'express';
import pg from 'pg';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import os from 'node:os';
import { existsSync, readdirSync } from 'node:fs';
import type * as SdkIndex from '../sdk/src/index';
import type { TallyErrorReport } from '../sdk/src/index';
import type * as SdkExpress from '../sdk/src/express';
import type * as SdkFastify from '../sdk/src/fastify';
import type * as SdkNode from '../sdk/src/node';
import Fastify, { type FastifyRequest } from 'fastify';
import { SDK_VERSION } from '../sdk/src/version';
import {
  type BenchContext,
  type BenchReport,
  type Figure,
  type PhaseReport,
  createTenantWithLicense,
  httpRequest,
  intFromEnv,
  measurePhase,
  round,
  summarizeLatencies,
  type LatencySummary,
} from './lib';

export interface SdkBenchConfig {
  clients: number;
  warmupSeconds: number;
  roundSeconds: number;
  rounds: number;
  /**
   * Rounds of the fixed-rate comparison: its p99 rests on the few collections of the app that fall
   * in each variant's rounds, so it gets twice the saturated comparison's.
   */
  rateRounds: number;
  /** Length of a fixed-rate round: its p99 needs a few thousand requests. */
  rateRoundSeconds: number;
  serialPairs: number;
  events: number;
  /**
   * Niceness given to the API's threads and its PostgreSQL backends during the overhead
   * comparisons (0: equal priority with the app). See `placeTally`.
   */
  tallyNice: number;
  /**
   * CPUs (a `taskset -c` list) the API's threads and its PostgreSQL backends are kept on during the
   * overhead comparisons (BENCH_SDK_TALLY_CPUS; default the machine's last CPU when it has two or
   * more; `all` for wherever the scheduler puts them). See `placeTally`.
   */
  tallyCpus: string | null;
  /**
   * How the middleware's clients send (BENCH_SDK_TRANSPORT): `worker` (default), `fetch: workerFetch()`
   * from `@tally/sdk/node`, the setup the README gives Node servers; `fetch`, the runtime's fetch
   * on the app's thread (the client's default). An SDK without `workerFetch` (an older checkout
   * under bench:alternate) sends with fetch, and the figures say so.
   */
  transport: 'worker' | 'fetch';
}

export function sdkConfigFromEnv(): SdkBenchConfig {
  return {
    clients: intFromEnv('BENCH_SDK_CLIENTS', 16),
    warmupSeconds: intFromEnv('BENCH_SDK_WARMUP_SECONDS', 2),
    roundSeconds: intFromEnv('BENCH_SDK_ROUND_SECONDS', 1),
    rounds: intFromEnv('BENCH_SDK_ROUNDS', 12),
    rateRounds: intFromEnv('BENCH_SDK_RATE_ROUNDS', 8),
    rateRoundSeconds: intFromEnv('BENCH_SDK_RATE_ROUND_SECONDS', 3),
    serialPairs: intFromEnv('BENCH_SDK_SERIAL_PAIRS', 1000),
    events: intFromEnv('BENCH_SDK_EVENTS', 200_000),
    tallyNice: intFromEnv('BENCH_SDK_TALLY_NICE', 19),
    tallyCpus: tallyCpusFromEnv(),
    transport: process.env.BENCH_SDK_TRANSPORT === 'fetch' ? 'fetch' : 'worker',
  };
}

function tallyCpusFromEnv(): string | null {
  const given = process.env.BENCH_SDK_TALLY_CPUS?.trim();
  if (given === 'all') return null;
  if (given) {
    if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(given)) throw new Error(`BENCH_SDK_TALLY_CPUS must be a CPU list such as 1 or 2-3, or all: ${given}`);
    return given;
  }
  const count = os.availableParallelism();
  return count >= 2 ? String(count - 1) : null;
}

/**
 * The SDK as it ships: built by its own build (sdk/scripts/build.mjs, esbuild + tsc) and loaded
 * from sdk/dist, not its TypeScript compiled on the fly by tsx (which wraps every closure a
 * request creates in a naming helper the package does not have).
 */
function loadBuiltSdk(): {
  Tally: typeof SdkIndex.Tally;
  tallyExpress: typeof SdkExpress.tallyExpress;
  tallyFastify: typeof SdkFastify.tallyFastify;
  workerFetch: typeof SdkNode.workerFetch | undefined;
} {
  execFileSync(process.execPath, [path.join(__dirname, '..', 'sdk', 'scripts', 'build.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] });
  /* eslint-disable @typescript-eslint/no-require-imports */
  const index = require('../sdk/dist/cjs/index.js') as typeof SdkIndex;
  const forExpress = require('../sdk/dist/cjs/express.js') as typeof SdkExpress;
  const forFastify = require('../sdk/dist/cjs/fastify.js') as typeof SdkFastify;
  const node = existsSync(path.join(__dirname, '..', 'sdk', 'dist', 'cjs', 'node.js')) ? (require('../sdk/dist/cjs/node.js') as typeof SdkNode) : undefined;
  /* eslint-enable @typescript-eslint/no-require-imports */
  return { Tally: index.Tally, tallyExpress: forExpress.tallyExpress, tallyFastify: forFastify.tallyFastify, workerFetch: node?.workerFetch };
}

interface Served {
  url: string;
  close(): Promise<void>;
}

async function serveTrivial(middleware?: express.RequestHandler): Promise<Served> {
  const app = express();
  if (middleware) app.use(middleware);
  app.get('/v1/ping', (_req, res) => {
    res.json({ ok: true });
  });
  const server = http.createServer(app);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/ping`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The same trivial route on Fastify, bare or with `tallyFastify` registered. */
async function serveTrivialFastify(plugin?: (app: ReturnType<typeof Fastify>) => Promise<void>): Promise<Served> {
  const app = Fastify({ keepAliveTimeout: 60_000 });
  if (plugin) await plugin(app);
  app.get('/v1/ping', async () => ({ ok: true }));
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url: `${address}/v1/ping`,
    close: async () => {
      app.server.closeAllConnections();
      await app.close();
    },
  };
}

interface LoadResult {
  latencies: number[];
  requests: number;
  seconds: number;
  /** CPU time of this process (the app, the load and the SDK's sends) over the measured rounds, µs. */
  cpuMicros: number;
  errors: string[];
}

async function drive(url: string, headers: Record<string, string>, clients: number, seconds: number, into?: LoadResult): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const res = await httpRequest(url, { method: 'GET', headers, agent }).catch((e: unknown) => ({ status: 0, body: String(e) }));
        if (!into) continue;
        if (res.status !== 200) {
          if (into.errors.length < 20) into.errors.push(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
          continue;
        }
        into.latencies.push(performance.now() - t0);
        into.requests += 1;
      }
    }),
  );
  if (into) {
    into.seconds += (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    into.cpuMicros += used.user + used.system;
  }
  agent.destroy();
}

/**
 * `seconds` of requests at `rate` per second (open loop): each sent when due whether or not
 * earlier ones were answered, its latency counted from when it was due, so a stall of this
 * process (the app's or the SDK's work) delays the requests due during it, as it would a real
 * client's.
 */
async function driveAtRate(url: string, headers: Record<string, string>, rate: number, seconds: number, into: LoadResult): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const total = Math.round(rate * seconds);
  const cpu = process.cpuUsage();
  // Nothing of an answered request is kept (no array of its promises): what the generator holds
  // would survive the app's young-generation collections and lengthen them for both variants.
  let pending = 0;
  let allAnswered: (() => void) | null = null;
  const answered = () => {
    if (--pending === 0 && allAnswered) allAnswered();
  };
  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
    for (; sent < due; sent++) {
      const dueAt = t0 + (sent * 1000) / rate;
      pending++;
      httpRequest(url, { method: 'GET', headers, agent })
        .then(
          (res) => {
            if (res.status !== 200) {
              if (into.errors.length < 20) into.errors.push(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
              return;
            }
            into.latencies.push(performance.now() - dueAt);
            into.requests += 1;
          },
          (e: unknown) => {
            if (into.errors.length < 20) into.errors.push(String(e));
          },
        )
        .finally(answered);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  if (pending > 0) await new Promise<void>((resolve) => (allAnswered = resolve));
  into.seconds += (performance.now() - t0) / 1000;
  const used = process.cpuUsage(cpu);
  into.cpuMicros += used.user + used.system;
  agent.destroy();
}

async function storedFor(databaseUrl: string, licenseId: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_events WHERE license_id = $1', [licenseId]);
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

/** Where the API's threads and its PostgreSQL backends run during the overhead comparisons. */
interface TallyPlacement {
  nice: number;
  /** A CPU list as `taskset -c` takes it (`1`, `0-3`), or null: wherever the scheduler puts them. */
  cpus: string | null;
}

/**
 * Sets the CPU priority (niceness) and, when `cpus` is given, the CPUs (`taskset`) of every
 * thread of the API's process and of the PostgreSQL backends serving its database; null when
 * done, else why not (what was set before the failure stays).
 *
 * Why: the middleware's events go to a real Tally, which on this machine shares the app's two
 * cores. A 1,000-event batch costs the API and PostgreSQL tens of ms of CPU at once, and at equal
 * priority the app and the load generator wait those bursts out: at 4,000 req/s on Fastify
 * (measurement script, generator in its own process) the p99 added was 17.4 ms at equal priority
 * and 1.7 ms with the API and its backends at nice 19. That is the cost of running the meter on
 * the app's machine, not of the middleware; in a deployment Tally runs elsewhere. At a low
 * priority Tally still gets every idle cycle and stores every event (the phase flushes and waits).
 * A low priority alone still lets the scheduler run Tally on the app's core: with the API and its
 * backends at nice 19 but on any CPU, the app's thread waited in the run queue 1.8-4% of the time
 * when the middleware's events were really ingested, 0.3-0.6% when they were not (same-process
 * script, /proc/self/task/<pid>/schedstat, Fastify, 8 alternated rounds); kept on the last CPU
 * (`BENCH_SDK_TALLY_CPUS`), they leave the app's core to the app, as a Tally on its own machine would.
 */
async function placeTally(ctx: BenchContext, placement: TallyPlacement, placed = new Set<number>()): Promise<string | null> {
  const client = new pg.Client({ connectionString: ctx.databaseUrl });
  try {
    await client.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
    const threads = readdirSync(`/proc/${ctx.server.pid}/task`).map(Number);
    for (const id of [...threads, ...rows.map((r) => r.pid)]) {
      // Placed before this comparison's earlier rounds: only threads and backends started since
      // need it (a taskset is a process spawned from this one, between rounds).
      if (placed.has(id)) continue;
      try {
        os.setPriority(id, placement.nice);
        if (placement.cpus !== null) execFileSync('taskset', ['-p', '-c', placement.cpus, String(id)], { stdio: ['ignore', 'ignore', 'pipe'] });
        placed.add(id);
      } catch (error) {
        // a thread or backend that ended meanwhile
        const gone = (error as { info?: { code?: string } }).info?.code === 'ESRCH' || /No such process/.test(String((error as { stderr?: unknown }).stderr ?? ''));
        if (!gone) throw error;
      }
    }
    return null;
  } catch (error) {
    return error instanceof Error ? error.message.split('\n')[0]! : String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The CPUs a process may run on (`taskset -c`'s list), or null when taskset cannot say. */
function cpusOf(pid: number): string | null {
  try {
    return /:\s*(\S+)\s*$/.exec(execFileSync('taskset', ['-p', '-c', String(pid)], { encoding: 'utf8' }))?.[1] ?? null;
  } catch {
    return null;
  }
}

const blank = (): LoadResult => ({ latencies: [], requests: 0, seconds: 0, cpuMicros: 0, errors: [] });

/** Adds one round's load to a variant's total. */
function addInto(total: LoadResult, one: LoadResult): void {
  for (const l of one.latencies) total.latencies.push(l);
  total.requests += one.requests;
  total.seconds += one.seconds;
  total.cpuMicros += one.cpuMicros;
  for (const e of one.errors) if (total.errors.length < 20) total.errors.push(e);
}

export async function runSdkBench(ctx: BenchContext, cfg: SdkBenchConfig): Promise<BenchReport> {
  const { Tally, tallyExpress, tallyFastify, workerFetch } = loadBuiltSdk();
  // One worker for the middleware's clients, as an app would share it.
  const sender = cfg.transport === 'worker' && workerFetch ? workerFetch() : undefined;
  const transport = sender
    ? 'events sent from a worker thread (fetch: workerFetch(), @tally/sdk/node)'
    : `events sent by the runtime's fetch on the app's thread${cfg.transport === 'worker' ? ' (this SDK has no workerFetch)' : ' (BENCH_SDK_TRANSPORT=fetch)'}`;
  const sendWith = sender ? { fetch: sender } : {};
  const tenant = await createTenantWithLicense(ctx.server, `sdk-${ctx.runId}`, 'enterprise');
  const reports: TallyErrorReport[] = [];
  const onError = (r: TallyErrorReport) => {
    if (reports.length < 20) reports.push(r);
  };
  const phases: PhaseReport[] = [];
  const headers = { 'x-license-id': tenant.licenseId };

  /**
   * One framework's bare route against the same route behind the middleware: saturated (closed
   * loop, rounds alternated), then at half the bare route's throughput (open loop, rounds
   * alternated). Phase names start with `label`.
   */
  const compareOverhead = async (label: string, bareUrl: string, billedUrl: string, recorder: SdkIndex.Tally): Promise<Overhead> => {
    const variants = [
      { name: `${label}bare route`, url: bareUrl, load: blank(), rounds: [] as LoadResult[] },
      { name: `${label}with middleware (enforce: false)`, url: billedUrl, load: blank(), rounds: [] as LoadResult[] },
    ];
    for (const v of variants) await drive(v.url, headers, cfg.clients, cfg.warmupSeconds);
    // Before every round (outside its timing), so that backends the API's pool opened since are
    // lowered too. The first failure is kept for the figures' baselines.
    let failed: string | null | undefined;
    // given back after the comparison: the API's priority and CPUs before it (to its backends
    // too, which PostgreSQL starts at its own, normally the same)
    const original: TallyPlacement = { nice: os.getPriority(ctx.server.pid), cpus: cfg.tallyCpus === null ? null : cpusOf(ctx.server.pid) };
    const placing = cfg.tallyNice !== 0 || cfg.tallyCpus !== null;
    const placed = new Set<number>();
    const isolate = async () => {
      const outcome = placing ? await placeTally(ctx, { nice: cfg.tallyNice, cpus: cfg.tallyCpus }, placed) : 'none';
      if (failed === undefined || (failed === null && outcome !== null)) failed = outcome;
    };
    const { resources } = await measurePhase(ctx.server, async () => {
      for (let r = 0; r < cfg.rounds; r++) {
        for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
          await isolate();
          const one = blank();
          await drive(v.url, headers, cfg.clients, cfg.roundSeconds, one);
          v.rounds.push(one);
          addInto(v.load, one);
        }
      }
      await recorder.flush();
    });
    const saturated: PhaseReport[] = variants.map((v) => ({
      name: v.name,
      resources,
      errors: v.load.errors,
      metrics: {
        requests: v.load.requests,
        requestsPerSecond: round(v.load.requests / v.load.seconds, 0),
        latency: summarizeLatencies(v.load.latencies),
        appCpuMicrosPerRequest: round(v.load.cpuMicros / v.load.requests, 1),
      },
    }));
    const rate = Math.max(100, Math.round(variants[0]!.load.requests / variants[0]!.load.seconds / 2 / 100) * 100);
    const atRate = variants.map((v) => ({ name: `${v.name}, ${rate} req/s (open loop)`, url: v.url, load: blank(), rounds: [] as LoadResult[] }));
    const { resources: rateResources } = await measurePhase(ctx.server, async () => {
      for (let r = 0; r < cfg.rateRounds; r++) {
        for (const v of r % 2 === 0 ? atRate : [...atRate].reverse()) {
          await isolate();
          const one = blank();
          await driveAtRate(v.url, headers, rate, cfg.rateRoundSeconds, one);
          v.rounds.push(one);
          addInto(v.load, one);
        }
      }
      await recorder.flush();
    });
    const restored = placing ? await placeTally(ctx, original) : null;
    if (restored !== null) saturated[0]!.errors.push(`could not give the API its priority and CPUs back (${restored}): later phases ran without them`);
    const fixed: PhaseReport[] = atRate.map((v) => ({
      name: v.name,
      resources: rateResources,
      errors: v.load.errors,
      metrics: { requests: v.load.requests, rate, latency: summarizeLatencies(v.load.latencies), appCpuMicrosPerRequest: round(v.load.cpuMicros / v.load.requests, 1) },
    }));
    const priority =
      failed === 'none'
        ? 'the API and PostgreSQL at the app\'s priority, on any CPU (BENCH_SDK_TALLY_NICE=0, BENCH_SDK_TALLY_CPUS=all)'
        : failed === null
          ? `the API's threads and its PostgreSQL backends at nice ${cfg.tallyNice}${cfg.tallyCpus === null ? ', on any CPU' : ` on CPU ${cfg.tallyCpus}`} (Tally as if on its own machine; BENCH_SDK_TALLY_NICE=0 and BENCH_SDK_TALLY_CPUS=all for neither)`
          : `the API and PostgreSQL not (wholly) moved aside: setting their priority or CPUs failed (${failed})`;
    // Round r of each variant ran next to the other's (A B, then B A): a pair shares the
    // machine's state of those seconds.
    const pairs = {
      throughput: variants[0]!.rounds.map((bareRound, r) => {
        const billedRound = variants[1]!.rounds[r]!;
        return (100 * (billedRound.requests / billedRound.seconds)) / (bareRound.requests / bareRound.seconds);
      }),
      p99AddedMs: atRate[0]!.rounds.map((bareRound, r) => summarizeLatencies(atRate[1]!.rounds[r]!.latencies).p99Ms - summarizeLatencies(bareRound.latencies).p99Ms),
    };
    return { saturated, rate, fixed, priority, pairs };
  };

  // 1. enforce: false, throughput and p99 under load, on Express.
  const recorder = new Tally({ apiKey: tenant.ownerKey, baseUrl: ctx.server.baseUrl, onError, maxBufferedEvents: 1_000_000, ...sendWith });
  const bare = await serveTrivial();
  const billed = await serveTrivial(tallyExpress({ tally: recorder, billableRoutes: ['GET /v1/ping'], licenseId: (req) => req.header('x-license-id') }));
  const enforcer = new Tally({ apiKey: tenant.ownerKey, baseUrl: ctx.server.baseUrl, onError, maxBufferedEvents: 1_000_000, ...sendWith });
  const enforced = await serveTrivial(
    tallyExpress({ tally: enforcer, billableRoutes: ['GET /v1/ping'], licenseId: (req) => req.header('x-license-id'), enforce: true, failOpen: false }),
  );
  let onExpress: Overhead;
  try {
    onExpress = await compareOverhead('', bare.url, billed.url, recorder);
    phases.push(...onExpress.saturated);

    // 2. enforce: true, cache off: one client, alternating calls; and check round trips.
    const serial = [[], [], []] as number[][];
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const serialErrors: string[] = [];
    const { resources: serialResources } = await measurePhase(ctx.server, async () => {
      for (let i = 0; i < cfg.serialPairs; i++) {
        for (const [j, url] of [bare.url, enforced.url].entries()) {
          const t0 = performance.now();
          const res = await httpRequest(url, { method: 'GET', headers, agent });
          if (res.status !== 200 && serialErrors.length < 20) serialErrors.push(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
          serial[j]!.push(performance.now() - t0);
        }
        const t0 = performance.now();
        await enforcer.check({ licenseId: tenant.licenseId, usageType: 'api_call', quantity: 1 });
        serial[2]!.push(performance.now() - t0);
      }
      await enforcer.flush();
    });
    agent.destroy();
    const [sBare, sEnforced, sCheck] = serial.map((s) => summarizeLatencies(s)) as [LatencySummary, LatencySummary, LatencySummary];
    phases.push({ name: 'serial: bare / enforce: true / usage.check', resources: serialResources, errors: serialErrors, metrics: { pairs: cfg.serialPairs, bare: sBare, enforced: sEnforced, check: sCheck } });
  } finally {
    await Promise.all([bare.close(), billed.close(), enforced.close()]);
    await recorder.shutdown({ timeoutMs: 30_000 });
    await enforcer.shutdown({ timeoutMs: 30_000 });
  }

  // 1c. The same comparison on Fastify: Express's own request handling keeps enough of each
  //     request past a young-generation collection that its bare route's p99 at half load is
  //     tens of ms on this machine, and a 1 ms difference drowns in it; Fastify's bare route has
  //     no such tail.
  const fastifyRecorder = new Tally({ apiKey: tenant.ownerKey, baseUrl: ctx.server.baseUrl, onError, maxBufferedEvents: 1_000_000, ...sendWith });
  const fastifyBare = await serveTrivialFastify();
  const fastifyBilled = await serveTrivialFastify(async (app) => {
    await app.register(tallyFastify, { tally: fastifyRecorder, billableRoutes: ['GET /v1/ping'], licenseId: (req: FastifyRequest) => req.headers['x-license-id'] as string | undefined });
  });
  let onFastify: Overhead;
  try {
    onFastify = await compareOverhead('Fastify: ', fastifyBare.url, fastifyBilled.url, fastifyRecorder);
  } finally {
    await Promise.all([fastifyBare.close(), fastifyBilled.close()]);
    await fastifyRecorder.shutdown({ timeoutMs: 30_000 });
    await sender?.close();
  }

  // 3. SDK throughput vs raw batch calls of the same events (same fields, random UUID keys, the
  //    SDK's sdkVersion), in the order SDK, raw, raw, SDK so that drift hits both alike.
  const half = Math.ceil(cfg.events / 2);
  const sdkTenant = await createTenantWithLicense(ctx.server, `sdk-tp-${ctx.runId}`, 'enterprise');
  const rawTenant = await createTenantWithLicense(ctx.server, `sdk-raw-${ctx.runId}`, 'enterprise');
  const throughput = { sdk: { seconds: 0, events: 0, errors: [] as string[], resources: [] as PhaseReport['resources'][] }, raw: { seconds: 0, events: 0, errors: [] as string[], resources: [] as PhaseReport['resources'][] } };
  const sdkRound = async () => {
    const tally = new Tally({ apiKey: sdkTenant.ownerKey, baseUrl: ctx.server.baseUrl, onError, maxBufferedEvents: half });
    const { result, resources } = await measurePhase(ctx.server, async () => {
      const t0 = performance.now();
      for (let i = 0; i < half; i++) void tally.track({ licenseId: sdkTenant.licenseId, usageType: 'api_call', quantity: 1, userId: `u-${i % 1000}` });
      await tally.flush();
      return (performance.now() - t0) / 1000;
    });
    await tally.shutdown();
    const stats = tally.stats();
    if (stats.accepted !== half) throughput.sdk.errors.push(`SDK: ${JSON.stringify(stats)}`);
    throughput.sdk.seconds += result;
    throughput.sdk.events += half;
    throughput.sdk.resources.push(resources);
  };
  const rawRound = async () => {
    const { result, resources } = await measurePhase(ctx.server, async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
      const batches = Math.ceil(half / 1000);
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let b = next++; b < batches; b = next++) {
            const events = Array.from({ length: Math.min(1000, half - b * 1000) }, (_, k) => ({
              licenseId: rawTenant.licenseId,
              usageType: 'api_call',
              quantity: 1,
              userId: `u-${k % 1000}`,
              idempotencyKey: randomUUID(),
              occurredAt: new Date().toISOString(),
              sdkVersion: `tally-sdk-node/${SDK_VERSION}`,
            }));
            const res = await httpRequest(`${ctx.server.baseUrl}/api/trpc/usage.trackEvents`, {
              method: 'POST',
              headers: { authorization: `Bearer ${rawTenant.ownerKey}` },
              body: JSON.stringify({ events }),
              agent,
            });
            if (res.status !== 200 && throughput.raw.errors.length < 20) throughput.raw.errors.push(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
          }
        }),
      );
      agent.destroy();
      return (performance.now() - t0) / 1000;
    });
    throughput.raw.seconds += result;
    throughput.raw.events += half;
    throughput.raw.resources.push(resources);
  };
  await sdkRound();
  await rawRound();
  await rawRound();
  await sdkRound();
  for (const [name, t, licenseId] of [
    ['SDK track + flush', throughput.sdk, sdkTenant.licenseId],
    ['raw trackEvents, 4 clients', throughput.raw, rawTenant.licenseId],
  ] as const) {
    const stored = await storedFor(ctx.databaseUrl, licenseId);
    if (stored !== t.events) t.errors.push(`stored ${stored} of ${t.events} events`);
    phases.push({ name: `${name}, 2 × ${half} events`, resources: t.resources.at(-1)!, errors: t.errors, metrics: { seconds: round(t.seconds, 3), eventsPerSecond: round(t.events / t.seconds, 0) } });
  }
  phases.push(...onExpress.fixed, ...onFastify.saturated, ...onFastify.fixed);
  if (reports.length) phases[0]!.errors.push(...reports.map((r) => `onError: ${JSON.stringify(r).slice(0, 300)}`));

  const serialMetrics = phases[2]!.metrics as { bare: LatencySummary; enforced: LatencySummary; check: LatencySummary };
  const sdkRate = phases[3]!.metrics.eventsPerSecond as number;
  const rawRate = phases[4]!.metrics.eventsPerSecond as number;
  const figures: Figure[] = [
    ...overheadFigures('', onExpress, cfg, '; the API, PostgreSQL and Redis share the same 2 cores', transport),
    ...overheadFigures('Fastify ', onFastify, cfg, '', transport),
    {
      what: 'middleware, enforce: true (cache off), p50 added, 1 client',
      value: round(serialMetrics.enforced.p50Ms - serialMetrics.bare.p50Ms, 2),
      unit: 'ms',
      digits: 2,
      baseline: `one usage.check round trip: p50 ${round(serialMetrics.check.p50Ms, 2)} ms, p99 ${round(serialMetrics.check.p99Ms, 2)} ms`,
    },
    {
      what: 'SDK throughput into Tally (track + flush, one process)',
      value: sdkRate,
      unit: 'events/s',
      target: { value: 20_000, better: 'higher' },
      baseline: `the same events as raw 1,000-event trackEvents calls, 4 clients (ingest (a)'s method): ${rawRate} events/s, same run (rounds SDK, raw, raw, SDK)`,
    },
  ];
  return { name: 'sdk', figures, phases, config: { ...cfg } };
}

/** A framework's bare route against the same route behind the middleware (`compareOverhead`). */
interface Overhead {
  saturated: PhaseReport[];
  rate: number;
  fixed: PhaseReport[];
  /** How the API's CPU priority stood during the comparison, for the figures' baselines. */
  priority: string;
  /**
   * Per pair of rounds run next to each other: throughput with ÷ without (%), and the p99 added
   * at the fixed rate (ms). The figures are their medians: this machine's speed moves by up to
   * half within a run (bare rounds of one run from 5,500 to 11,400 req/s), and a ratio of totals
   * follows whichever variant's rounds the slow seconds fell in; a pair's two rounds share them.
   */
  pairs: { throughput: number[]; p99AddedMs: number[] };
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const spread = (values: readonly number[], digits: number) => `[${round(Math.min(...values), digits)}–${round(Math.max(...values), digits)}]`;

/** The overhead figures of one comparison; `label` prefixes their names (Express's have none). */
function overheadFigures(label: string, on: Overhead, cfg: SdkBenchConfig, cpuNote: string, transport: string): Figure[] {
  const { clients, roundSeconds, rateRoundSeconds } = cfg;
  const m = (p: PhaseReport) => p.metrics as { requestsPerSecond: number; latency: LatencySummary; appCpuMicrosPerRequest: number };
  const [bare, billed] = on.saturated.map(m) as [ReturnType<typeof m>, ReturnType<typeof m>];
  const [rateBare, rateBilled] = on.fixed.map((p) => m(p).latency) as [LatencySummary, LatencySummary];
  const p99s = (a: LatencySummary, b: LatencySummary) => `p99 ${round(a.p99Ms, 2)} → ${round(b.p99Ms, 2)} ms; p50 ${round(a.p50Ms, 2)} → ${round(b.p50Ms, 2)} ms`;
  return [
    {
      what: `${label}middleware, enforce: false, p99 added at ${on.rate} req/s (half the bare route's throughput, open loop)`,
      value: round(median(on.pairs.p99AddedMs), 2),
      unit: 'ms',
      digits: 2,
      target: { value: 1, better: 'lower' },
      baseline: `median of ${on.pairs.p99AddedMs.length} pairs of ${rateRoundSeconds} s rounds ${spread(on.pairs.p99AddedMs, 2)}; over all rounds ${p99s(rateBare, rateBilled)}; ${transport}; ${on.priority}`,
    },
    {
      what: `${label}middleware, enforce: false, p99 added at saturation (${clients} clients, closed loop: queueing)`,
      value: round(billed.latency.p99Ms - bare.latency.p99Ms, 2),
      unit: 'ms',
      digits: 2,
      baseline: p99s(bare.latency, billed.latency),
    },
    {
      what: `${label}middleware, enforce: false, throughput vs bare route`,
      value: round(median(on.pairs.throughput), 1),
      unit: '%',
      digits: 1,
      target: { value: 90, better: 'higher' },
      baseline: `median of ${on.pairs.throughput.length} pairs of ${roundSeconds} s rounds ${spread(on.pairs.throughput, 1)}; over all rounds ${billed.requestsPerSecond} vs ${bare.requestsPerSecond} req/s (${round((100 * billed.requestsPerSecond) / bare.requestsPerSecond, 1)}%); ${transport}; ${on.priority}`,
    },
    {
      what: `${label}middleware, enforce: false, app process CPU added per request`,
      value: round(billed.appCpuMicrosPerRequest - bare.appCpuMicrosPerRequest, 1),
      unit: 'µs',
      digits: 1,
      baseline: `${bare.appCpuMicrosPerRequest} → ${billed.appCpuMicrosPerRequest} µs per request (this process, all its threads: app, load and the SDK's sends)${cpuNote}`,
    },
  ];
}
