/**
 * Shared pieces of the benchmarks: a throw-away database, the API started as `npm start`
 * starts it, process sampling (RSS, CPU) from /proc, an HTTP client with keep-alive,
 * percentiles and the results table. Benchmarks measure; they never assert targets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createServer } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';

export const ROOT = path.resolve(__dirname, '..');
export const RESULTS_DIR = path.join(ROOT, 'bench', 'results');

// ---------------------------------------------------------------------------------------
// Statistics and formatting

/** Nearest-rank percentile (p in 0..100) of unsorted samples; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

export function summarizeLatencies(samplesMs: readonly number[]): LatencySummary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const at = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]! : Number.NaN);
  const mean = sorted.length ? sorted.reduce((s, v) => s + v, 0) / sorted.length : Number.NaN;
  return { count: sorted.length, p50Ms: at(50), p90Ms: at(90), p99Ms: at(99), maxMs: sorted[sorted.length - 1] ?? Number.NaN, meanMs: mean };
}

export const round = (value: number, digits = 1): number => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

export function formatNumber(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** One printed figure: what was measured, its value, and the target or baseline beside it. */
export interface Figure {
  what: string;
  value: number;
  unit: string;
  digits?: number;
  /** Target from DESIGN.md section 7; `higher` means the value should be at least `value`. */
  target?: { value: number; better: 'higher' | 'lower' };
  /** A baseline measured in the same run, or another comparison, as free text. */
  baseline?: string;
}

export function verdict(f: Figure): string {
  if (!f.target || !Number.isFinite(f.value)) return '';
  const ok = f.target.better === 'higher' ? f.value >= f.target.value : f.value <= f.target.value;
  return ok ? 'met' : 'MISSED';
}

export function renderTable(headers: string[], rows: string[][], alignRight: boolean[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (alignRight[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}

export function renderFigures(figures: Figure[]): string {
  const rows = figures.map((f) => [
    f.what,
    Number.isFinite(f.value) ? `${formatNumber(f.value, f.digits ?? 0)} ${f.unit}`.trim() : 'n/a',
    f.target ? `${f.target.better === 'higher' ? '>=' : '<='} ${formatNumber(f.target.value, f.digits ?? 0)} ${f.unit}`.trim() : '',
    verdict(f),
    f.baseline ?? '',
  ]);
  return renderTable(['figure', 'measured', 'target', '', 'baseline / notes'], rows, [false, true, true, false, false]);
}

export async function writeResults(name: string, startedAt: Date, data: unknown): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  // ISO 8601 with ':' replaced, so the name is valid on every file system.
  const file = path.join(RESULTS_DIR, `${name}-${startedAt.toISOString().replace(/:/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

// ---------------------------------------------------------------------------------------
// /proc sampling

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ; `getconf CLK_TCK` is 100 on Linux

async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return null;
  }
}

/** Resident set size of one process in bytes (VmRSS), or null once it has gone. */
export async function rssOf(pid: number): Promise<number | null> {
  const status = await readText(`/proc/${pid}/status`);
  const kb = status && /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : null;
}

interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime, in clock ticks */
  cpuTicks: number;
}

async function statOf(pid: number): Promise<ProcStat | null> {
  const text = await readText(`/proc/${pid}/stat`);
  if (!text) return null;
  // comm is in parentheses and may itself contain spaces or parentheses
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is state (field 3); ppid is field 4, utime 14, stime 15
  return { pid, ppid: Number(fields[1]), comm, cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

async function allProcesses(): Promise<ProcStat[]> {
  const pids = (await readdir('/proc')).filter((d) => /^\d+$/.test(d)).map(Number);
  return (await Promise.all(pids.map(statOf))).filter((s): s is ProcStat => s !== null);
}

/** The process and all its descendants. */
export async function processTree(rootPid: number): Promise<number[]> {
  const procs = await allProcesses();
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i++) for (const p of procs) if (p.ppid === tree[i]) tree.push(p.pid);
  return tree;
}

/**
 * The node process that serves HTTP. `npm start` runs one node process (see startCommand);
 * should a launcher sit in between, the server is the deepest process of the tree whose
 * command line names the entry point.
 */
export async function servingPid(rootPid: number): Promise<number> {
  let best = rootPid;
  for (const pid of await processTree(rootPid)) {
    const cmdline = (await readText(`/proc/${pid}/cmdline`))?.split('\0').join(' ') ?? '';
    if (cmdline.includes(startCommand().entry)) best = pid;
  }
  return best;
}

/** Samples VmRSS every `intervalMs` while running; reports the peak of the process and of its whole tree. */
export class RssSampler {
  private timer?: NodeJS.Timeout;
  private peak = 0;
  private peakTree = 0;
  private samples = 0;
  private tree: number[] = [];
  private startedAt = 0;
  /** [ms since start, MB] of the serving process, one point per sample. */
  readonly timeline: [number, number][] = [];

  constructor(
    private readonly pid: number,
    private readonly rootPid: number,
    private readonly intervalMs = 100,
  ) {}

  async start(): Promise<void> {
    this.startedAt = performance.now();
    this.tree = await processTree(this.rootPid);
    await this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
  }

  private async sample(): Promise<void> {
    const values = await Promise.all(this.tree.map(rssOf));
    const own = values[this.tree.indexOf(this.pid)] ?? null;
    if (own !== null) {
      this.peak = Math.max(this.peak, own);
      this.timeline.push([Math.round(performance.now() - this.startedAt), round(own / 1048576)]);
    }
    this.peakTree = Math.max(this.peakTree, values.reduce<number>((s, v) => s + (v ?? 0), 0));
    this.samples += 1;
  }

  async stop(): Promise<{ peakRssMb: number; peakTreeRssMb: number; samples: number; timeline: [number, number][] }> {
    clearInterval(this.timer);
    await this.sample();
    return { peakRssMb: round(this.peak / 1048576), peakTreeRssMb: round(this.peakTree / 1048576), samples: this.samples, timeline: this.timeline };
  }
}

/**
 * CPU time spent during a phase by the API process, by PostgreSQL (all `postgres` processes)
 * and by this benchmark process, plus the whole machine's busy time, in cores (1.0 = one
 * core fully busy for the whole phase).
 */
export class CpuMeter {
  private startedAt = 0;
  private api = 0;
  private postgres = new Map<number, number>();
  private redis = new Map<number, number>();
  private self = process.cpuUsage();
  private machine = { busy: 0, total: 0 };

  constructor(private readonly apiPid: number) {}

  private static async machineTicks(): Promise<{ busy: number; total: number }> {
    const line = (await readText('/proc/stat'))?.split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((s, x) => s + x, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    return { busy: total - idle, total };
  }

  private static async postgresTicks(): Promise<Map<number, number>> {
    return new Map((await allProcesses()).filter((p) => p.comm.startsWith('postgres')).map((p) => [p.pid, p.cpuTicks]));
  }

  /** Every redis-server on the machine (the quota counters live there). */
  private static async redisTicks(): Promise<Map<number, number>> {
    return new Map((await allProcesses()).filter((p) => p.comm.startsWith('redis-server')).map((p) => [p.pid, p.cpuTicks]));
  }

  async start(): Promise<void> {
    this.startedAt = performance.now();
    this.api = (await statOf(this.apiPid))?.cpuTicks ?? 0;
    this.postgres = await CpuMeter.postgresTicks();
    this.redis = await CpuMeter.redisTicks();
    this.machine = await CpuMeter.machineTicks();
    this.self = process.cpuUsage();
  }

  async stop(): Promise<{
    apiCores: number;
    postgresCores: number;
    redisCores: number;
    benchClientCores: number;
    machineBusyPct: number;
    apiCpuSeconds: number;
    redisCpuSeconds: number;
  }> {
    const seconds = (performance.now() - this.startedAt) / 1000;
    const self = process.cpuUsage(this.self);
    const api = ((await statOf(this.apiPid))?.cpuTicks ?? this.api) - this.api;
    let postgres = 0;
    for (const [pid, ticks] of await CpuMeter.postgresTicks()) postgres += ticks - (this.postgres.get(pid) ?? 0);
    let redis = 0;
    for (const [pid, ticks] of await CpuMeter.redisTicks()) redis += ticks - (this.redis.get(pid) ?? 0);
    const machine = await CpuMeter.machineTicks();
    const ticksToCores = (t: number) => round(t / CLOCK_TICKS_PER_SECOND / seconds, 2);
    return {
      apiCores: ticksToCores(api),
      postgresCores: ticksToCores(postgres),
      redisCores: ticksToCores(redis),
      benchClientCores: round((self.user + self.system) / 1e6 / seconds, 2),
      machineBusyPct: round((100 * (machine.busy - this.machine.busy)) / Math.max(1, machine.total - this.machine.total)),
      // unrounded, for CPU per request (the quota benchmark): clock ticks are 10 ms
      apiCpuSeconds: api / CLOCK_TICKS_PER_SECOND,
      redisCpuSeconds: redis / CLOCK_TICKS_PER_SECOND,
    };
  }
}

export interface PhaseResources {
  wallSeconds: number;
  /** Monotonic clock (process.hrtime, µs): the same clock as a V8 .cpuprofile's timestamps. */
  window: { fromUs: number; toUs: number };
  peakRssMb: number;
  peakTreeRssMb: number;
  rssSamples: number;
  apiCores: number;
  postgresCores: number;
  /** Every redis-server process of the machine. */
  redisCores?: number;
  benchClientCores: number;
  machineBusyPct: number;
  /** CPU seconds of the API process and of redis-server during the phase. */
  apiCpuSeconds?: number;
  redisCpuSeconds?: number;
  /** From the API's own /metrics, scraped before and after the phase. */
  api?: ApiRuntimeStats;
  /** [ms since phase start, MB] of the API process. */
  rssTimeline?: [number, number][];
}

export interface ApiRuntimeStats {
  heapUsedMb: number;
  heapTotalMb: number;
  externalMb: number;
  gcSeconds: number;
  eventLoopLagP99Ms: number;
  /** Multi-row inserts during the phase and their mean size (group commit at work). */
  insertStatements: number;
  meanEventsPerInsert: number;
}

/** Prometheus text → `name{labels}` → value. */
export async function scrapeMetrics(baseUrl: string): Promise<Map<string, number>> {
  const res = await httpRequest(`${baseUrl}/metrics`, { method: 'GET' });
  const values = new Map<string, number>();
  for (const line of res.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

function sumOf(metrics: Map<string, number>, name: string): number {
  let total = 0;
  for (const [key, value] of metrics) if (key === name || key.startsWith(`${name}{`)) total += value;
  return total;
}

function runtimeStats(before: Map<string, number>, after: Map<string, number>): ApiRuntimeStats {
  const mb = (name: string) => round(sumOf(after, name) / 1048576);
  const delta = (name: string) => sumOf(after, name) - sumOf(before, name);
  const inserts = delta('tally_ingest_flush_events_count');
  return {
    heapUsedMb: mb('tally_nodejs_heap_size_used_bytes'),
    heapTotalMb: mb('tally_nodejs_heap_size_total_bytes'),
    externalMb: mb('tally_nodejs_external_memory_bytes'),
    gcSeconds: round(delta('tally_nodejs_gc_duration_seconds_sum'), 2),
    eventLoopLagP99Ms: round(sumOf(after, 'tally_nodejs_eventloop_lag_p99_seconds') * 1000, 1),
    insertStatements: inserts,
    meanEventsPerInsert: inserts ? round(delta('tally_ingest_flush_events_sum') / inserts, 1) : 0,
  };
}

/** Runs one phase while sampling the API's memory and everyone's CPU. */
export async function measurePhase<T>(server: StartedServer, run: () => Promise<T>): Promise<{ result: T; resources: PhaseResources }> {
  const rss = new RssSampler(server.pid, server.child.pid!);
  const cpu = new CpuMeter(server.pid);
  const metricsBefore = await scrapeMetrics(server.baseUrl).catch(() => undefined);
  await rss.start();
  await cpu.start();
  const hrNowUs = () => Number(process.hrtime.bigint() / 1000n);
  const fromUs = hrNowUs();
  const started = performance.now();
  const finish = async () => {
    const wallSeconds = (performance.now() - started) / 1000;
    const toUs = hrNowUs();
    const usage = await cpu.stop();
    const memory = await rss.stop();
    const metricsAfter = await scrapeMetrics(server.baseUrl).catch(() => undefined);
    return {
      wallSeconds: round(wallSeconds, 3),
      window: { fromUs, toUs },
      peakRssMb: memory.peakRssMb,
      peakTreeRssMb: memory.peakTreeRssMb,
      rssSamples: memory.samples,
      ...usage,
      api: metricsBefore && metricsAfter ? runtimeStats(metricsBefore, metricsAfter) : undefined,
      rssTimeline: memory.timeline,
    };
  };
  let result: T;
  try {
    result = await run();
  } catch (error) {
    await finish();
    throw error;
  }
  return { result, resources: await finish() };
}

// ---------------------------------------------------------------------------------------
// Database

const BASE_URL = process.env.BENCH_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';

export function databaseUrl(name: string): string {
  return `${BASE_URL}/${name}`;
}

async function withAdminClient<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl('postgres') });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createDatabase(name: string): Promise<void> {
  await withAdminClient((c) => c.query(`CREATE DATABASE "${name}"`));
}

export async function dropDatabase(name: string): Promise<void> {
  await withAdminClient((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

// ---------------------------------------------------------------------------------------
// The API under test

/** Deletes every key of a run's Redis prefix (the API's, after it stopped). */
export async function deleteRedisKeys(prefix: string): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export function randomAlphanumeric(length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = '';
  while (out.length < length) for (const b of randomBytes(length * 2)) if (b < 248 && out.length < length) out += alphabet[b % 62];
  return out;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
      .once('error', reject)
      .listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
  });
}

export interface StartedServer {
  child: ChildProcess;
  /** The node process serving HTTP (the child itself under `node --import tsx`). */
  pid: number;
  baseUrl: string;
  adminKey: string;
  redisKeyPrefix: string;
  output(): string;
  exited: Promise<number | null>;
}

export interface StartOptions {
  databaseUrl: string;
  env?: Record<string, string>;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
}

/**
 * What `npm start` runs, read from package.json so the benchmark cannot drift from it:
 * `node [node flags] <entry>`, with `nodeArgs` holding the flags.
 */
export function startCommand(): { nodeArgs: string[]; entry: string; text: string } {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const words = pkg.scripts.start.trim().split(/\s+/);
  if (words[0] !== 'node' || words.length < 2) throw new Error(`npm start must be "node [flags] <entry>" for the benchmark (got "${pkg.scripts.start}")`);
  return { nodeArgs: words.slice(1, -1), entry: words[words.length - 1]!, text: pkg.scripts.start };
}

/** Starts the API exactly as `npm start` does (see startCommand) with ROLE=api and waits for /health. */
export async function startServer(options: StartOptions): Promise<StartedServer> {
  const port = await freePort();
  // live, like the tenants it creates: an admin key acts in its own environment (analytics.platform counts it)
  const adminKey = `tk_live_${randomAlphanumeric(26)}`;
  const redisKeyPrefix = `bench:${port}:${randomAlphanumeric(8)}:`;
  const start = startCommand();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...start.nodeArgs, start.entry], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      DATABASE_URL: options.databaseUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      ROLE: 'api',
      LOG_LEVEL: 'warn',
      BOOTSTRAP_ADMIN_KEY: adminKey,
      REDIS_KEY_PREFIX: redisKeyPrefix,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const baseUrl = `http://127.0.0.1:${port}`;

  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the API exited during start-up:\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the API did not become healthy within 90 s:\n${out}`);
    }
    const status = await httpRequest(`${baseUrl}/health`, { method: 'GET' }).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return { child, pid: await servingPid(child.pid!), baseUrl, adminKey, redisKeyPrefix, output: () => out, exited };
}

/** SIGTERM, then wait for a clean exit (SIGKILL after the timeout). Returns the exit code. */
export async function stopServer(server: StartedServer, timeoutMs = 20_000): Promise<number | null> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return server.exited;
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), timeoutMs);
  try {
    return await server.exited;
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------
// HTTP

export interface HttpResponse {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

const defaultAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });

/** A minimal HTTP/1.1 client on node:http (cheaper per request than fetch, so the client side stays small). */
export function httpRequest(
  url: string,
  options: { method: 'GET' | 'POST'; headers?: Record<string, string>; body?: string | Buffer; agent?: http.Agent },
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...options.headers };
    if (options.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    const req = http.request(url, { method: options.method, headers, agent: options.agent ?? defaultAgent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly procedure: string,
    readonly body: string,
  ) {
    super(`${procedure}: HTTP ${status}: ${body.slice(0, 500)}`);
  }
}

/** POST a tRPC mutation with a plain JSON body, as curl would; returns result.data or throws on non-2xx. */
export async function trpcMutation<T>(
  baseUrl: string,
  procedure: string,
  input: unknown,
  key: string,
  agent?: http.Agent,
): Promise<T> {
  const res = await httpRequest(`${baseUrl}/api/trpc/${procedure}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}` },
    body: JSON.stringify(input),
    agent,
  });
  if (res.status < 200 || res.status >= 300) throw new HttpError(res.status, procedure, res.body);
  return (JSON.parse(res.body) as { result: { data: T } }).result.data;
}

// ---------------------------------------------------------------------------------------
// CPU profile (optional: BENCH_CPU_PROFILE=1 starts the API with --cpu-prof)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives: a package under node_modules, a file of ours, node internals. */
function ownerOf(url: string): string {
  if (!url) return '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return url;
  const src = /\/(src|bench|prisma)\/(.*)$/.exec(url);
  if (src) return `${src[1]}/${src[2]}`;
  return url;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  bySelfTime: { fn: string; where: string; ms: number; pct: number }[];
  byOwner: { where: string; ms: number; pct: number }[];
}

/**
 * Self time per function and per package/file of a .cpuprofile, optionally only of the
 * samples inside a window of the monotonic clock (a phase of the benchmark).
 */
export async function summarizeCpuProfile(file: string, window?: { fromUs: number; toUs: number }, top = 25): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfMs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window && (at < window.fromUs || at > window.toUs)) return;
    selfMs.set(id, (selfMs.get(id) ?? 0) + delta / 1000);
  });
  const total = [...selfMs.values()].reduce((s, v) => s + v, 0);
  const fnTotals = new Map<string, { fn: string; where: string; ms: number }>();
  const ownerTotals = new Map<string, number>();
  for (const [id, ms] of selfMs) {
    const frame = byId.get(id)!.callFrame;
    const owner = ownerOf(frame.url);
    // Files compiled by tsx report positions in the generated code: leave their lines out.
    const file = frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\//, '');
    const where = !frame.url ? owner : /^(src|bench|prisma)\//.test(owner) ? owner : `${file}:${frame.lineNumber + 1}`;
    const fn = frame.functionName || '(anonymous)';
    const key = `${fn}@${where}`;
    const entry = fnTotals.get(key) ?? { fn, where, ms: 0 };
    entry.ms += ms;
    fnTotals.set(key, entry);
    const bucket = frame.url ? owner : frame.functionName.startsWith('(') ? frame.functionName : owner;
    ownerTotals.set(bucket, (ownerTotals.get(bucket) ?? 0) + ms);
  }
  const pct = (ms: number) => round((100 * ms) / Math.max(total, 1), 1);
  return {
    file,
    totalMs: round(total, 0),
    bySelfTime: [...fnTotals.values()]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top)
      .map((e) => ({ ...e, ms: round(e.ms, 0), pct: pct(e.ms) })),
    byOwner: [...ownerTotals.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([where, ms]) => ({ where, ms: round(ms, 0), pct: pct(ms) })),
  };
}

// ---------------------------------------------------------------------------------------
// Fixtures through the public API

export interface BenchTenant {
  tenantId: string;
  ownerKey: string;
  licenseId: string;
}

/** A tenant (admin key → owner key, shown once) and one license on `plan`, made over HTTP like a user would. */
export async function createTenantWithLicense(server: StartedServer, slug: string, plan: string): Promise<BenchTenant> {
  const created = await trpcMutation<{ tenant: { id: string }; apiKey: { key: string } }>(
    server.baseUrl,
    'tenants.create',
    { name: `Bench ${slug}`, slug },
    server.adminKey,
  );
  const license = await trpcMutation<{ id: string }>(
    server.baseUrl,
    'licenses.create',
    { name: `Bench ${slug} license`, plan },
    created.apiKey.key,
  );
  return { tenantId: created.tenant.id, ownerKey: created.apiKey.key, licenseId: license.id };
}

// ---------------------------------------------------------------------------------------
// What a benchmark receives and returns (bench/run.ts prints and saves these)

export interface BenchContext {
  server: StartedServer;
  /** The throw-away database the API runs on, for baselines and checks straight through pg. */
  databaseUrl: string;
  /** Unique per run; use it in slugs and idempotency keys. */
  runId: string;
}

export interface PhaseReport {
  name: string;
  resources: PhaseResources;
  metrics: Record<string, unknown>;
  /** Non-empty when the phase failed (non-2xx answers, wrong counts, exceptions). */
  errors: string[];
}

export interface BenchReport {
  name: string;
  figures: Figure[];
  phases: PhaseReport[];
  config: Record<string, unknown>;
  /** Anything else worth keeping in the JSON results. */
  extra?: Record<string, unknown>;
}

export function renderPhases(phases: PhaseReport[]): string {
  const rows = phases.map((p) => [
    p.name,
    formatNumber(p.resources.wallSeconds, 2),
    formatNumber(p.resources.peakRssMb, 0),
    formatNumber(p.resources.apiCores, 2),
    formatNumber(p.resources.postgresCores, 2),
    p.resources.redisCores === undefined ? '' : formatNumber(p.resources.redisCores, 2),
    formatNumber(p.resources.benchClientCores, 2),
    `${formatNumber(p.resources.machineBusyPct, 0)}%`,
    p.resources.api ? formatNumber(p.resources.api.heapUsedMb, 0) : '',
    p.resources.api ? formatNumber(p.resources.api.gcSeconds, 2) : '',
    p.resources.api?.insertStatements ? formatNumber(p.resources.api.meanEventsPerInsert, 1) : '',
    p.errors.length ? `${p.errors.length} error(s)` : 'ok',
  ]);
  return renderTable(
    ['phase', 'wall s', 'API peak RSS MB', 'API cores', 'postgres cores', 'redis cores', 'bench client cores', 'machine busy', 'API heap used MB (end)', 'API GC s', 'events per INSERT', 'status'],
    rows,
    [false, true, true, true, true, true, true, true, true, true, true, false],
  );
}

export function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer (got "${raw}")`);
  return n;
}
