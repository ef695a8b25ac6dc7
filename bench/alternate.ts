/**
 * `npm run bench:alternate -- [--baseline <ref>] [-n <runs>] [--benches "ingest quota analytics"] [--max-load 0.5]`
 *
 * Before/after on one machine in one hour: runs the benchmarks alternately against a baseline
 * commit and this worktree (baseline, current, baseline, current, … N times each), waiting for
 * the machine's 1-minute load average to drop below --max-load before every run, then prints
 * each figure's median and range for both side by side and writes everything as JSON to
 * bench/results/alternate-<time>.json.
 *
 * The baseline lives in its own git worktree (BENCH_BASELINE_DIR, default /tmp/tally-baseline),
 * created or moved to the baseline commit, with `npm ci` run there when its package-lock.json
 * differs from the one installed last. Both sides are measured by this worktree's bench/ (it
 * is copied over the baseline's), so the figures are computed the same way; only the API
 * under test differs. Default baseline: the merge-base of HEAD and main.
 *
 * A run that had to start with the load still above --max-load (after BENCH_MAX_LOAD_WAIT_SECONDS,
 * default 900) is marked "loaded" in the JSON and the table.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync, cpSync, statSync } from 'node:fs';
import path from 'node:path';
import { renderTable } from './lib';

const ROOT = path.resolve(__dirname, '..');

interface Options {
  baseline: string;
  runs: number;
  benches: string[];
  maxLoad: number;
  baselineDir: string;
  maxWaitSeconds: number;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    baseline: '',
    runs: 5,
    benches: ['ingest', 'quota', 'analytics'],
    maxLoad: 0.5,
    baselineDir: process.env.BENCH_BASELINE_DIR ?? '/tmp/tally-baseline',
    maxWaitSeconds: Number(process.env.BENCH_MAX_LOAD_WAIT_SECONDS ?? 900),
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--baseline') opts.baseline = value();
    else if (arg === '-n' || arg === '--runs') opts.runs = Number(value());
    else if (arg === '--benches') opts.benches = value().split(/[\s,]+/).filter(Boolean);
    else if (arg === '--max-load') opts.maxLoad = Number(value());
    else if (/^\d+$/.test(arg)) opts.runs = Number(arg);
    else if (!arg.startsWith('-') && !opts.baseline) opts.baseline = arg;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!Number.isInteger(opts.runs) || opts.runs < 1) throw new Error('-n must be a positive integer');
  if (!opts.baseline) opts.baseline = git(ROOT, 'merge-base', 'HEAD', 'main');
  return opts;
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** The baseline worktree at the baseline commit, its dependencies installed, measured by this bench/. */
function prepareBaseline(opts: Options): string {
  const sha = git(ROOT, 'rev-parse', '--verify', `${opts.baseline}^{commit}`);
  const dir = opts.baselineDir;
  if (!existsSync(path.join(dir, '.git'))) {
    git(ROOT, 'worktree', 'add', '--detach', dir, sha);
  } else {
    git(dir, 'checkout', '--', '.'); // drop the bench/ copied in last time
    git(dir, 'checkout', '--detach', sha);
  }
  const marker = path.join(dir, 'node_modules', '.alternate-lock');
  const lock = sha256(path.join(dir, 'package-lock.json'));
  if (!existsSync(marker) || readFileSync(marker, 'utf8') !== lock) {
    console.log(`npm ci in ${dir} …`);
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
    writeFileSync(marker, lock);
  }
  for (const entry of readdirSync(path.join(ROOT, 'bench'))) {
    if (entry.endsWith('.ts')) cpSync(path.join(ROOT, 'bench', entry), path.join(dir, 'bench', entry));
  }
  mkdirSync(path.join(dir, 'bench', 'results'), { recursive: true });
  return sha;
}

const loadAverage = () => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);

async function waitForQuiet(opts: Options): Promise<{ load: number; loaded: boolean }> {
  const deadline = Date.now() + opts.maxWaitSeconds * 1000;
  let load = loadAverage();
  let said = false;
  while (load >= opts.maxLoad && Date.now() < deadline) {
    if (!said) console.log(`  waiting for load < ${opts.maxLoad} (now ${load}) …`);
    said = true;
    await new Promise((r) => setTimeout(r, 5000));
    load = loadAverage();
  }
  return { load, loaded: load >= opts.maxLoad };
}

interface BenchJson {
  bench: string;
  figures: { what: string; value: number; unit: string; baseline?: string }[];
  phases: { name: string; metrics: Record<string, unknown>; resources: { peakRssMb: number } }[];
}

/** `npm run bench -- <benches>` in `dir`; answers the result files it wrote. */
function runBench(dir: string, benches: string[]): Promise<{ status: number | null; results: BenchJson[] }> {
  const resultsDir = path.join(dir, 'bench', 'results');
  const before = new Set(readdirSync(resultsDir));
  return new Promise((resolve) => {
    const child = spawn('npm', ['run', '-s', 'bench', '--', ...benches], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (status) => {
      if (status !== 0) console.log(out.slice(-3000));
      const fresh = readdirSync(resultsDir)
        .filter((f) => !before.has(f) && f.endsWith('.json') && !f.includes('cpuprofile') && !f.startsWith('alternate-'))
        .sort((a, b) => statSync(path.join(resultsDir, a)).mtimeMs - statSync(path.join(resultsDir, b)).mtimeMs);
      resolve({ status, results: fresh.map((f) => JSON.parse(readFileSync(path.join(resultsDir, f), 'utf8')) as BenchJson) });
    });
  });
}

/** The figures compared, read from a run's result files (null when that bench did not run or lacks it). */
const FIGURES: { name: string; unit: string; better: 'higher' | 'lower'; read: (r: Map<string, BenchJson>) => number | null }[] = [
  { name: 'quota: enforced / unenforced throughput', unit: '%', better: 'higher', read: (r) => figure(r, 'quota', /throughput vs unenforced/) },
  { name: 'quota: API+Redis CPU added per event', unit: 'µs', better: 'lower', read: (r) => cpuAdded(r) },
  { name: 'quota: API CPU per event, unenforced', unit: 'µs', better: 'lower', read: (r) => phaseMetric(r, 'quota', 'unenforced single ingest', 'apiCpuUsPerRequest') },
  { name: 'quota: API CPU per event, enforced', unit: 'µs', better: 'lower', read: (r) => phaseMetric(r, 'quota', 'enforced single ingest', 'apiCpuUsPerRequest') },
  { name: 'quota: p99 added, 1 client A/B', unit: 'ms', better: 'lower', read: (r) => figure(r, 'quota', /p99 added, 1 client/) },
  { name: 'quota: p99 added, 64 clients', unit: 'ms', better: 'lower', read: (r) => figure(r, 'quota', /p99 added, \d+ clients/) },
  { name: 'quota: single-event, no limit', unit: 'req/s', better: 'higher', read: (r) => figure(r, 'quota', /no limit/) },
  { name: 'quota: single-event, hard limit', unit: 'req/s', better: 'higher', read: (r) => figure(r, 'quota', /with a hard limit/) },
  { name: 'analytics.usage p95', unit: 'ms', better: 'lower', read: (r) => figure(r, 'analytics', /^analytics\.usage/) },
  { name: 'analytics.usage p99', unit: 'ms', better: 'lower', read: (r) => phaseMetric(r, 'analytics', 'analytics.usage at fixed rate', 'p99Ms') ?? fromNote(r, 'analytics', /^analytics\.usage/, /p99 ([\d.]+) ms/) },
  { name: 'analytics.usage p50', unit: 'ms', better: 'lower', read: (r) => phaseMetric(r, 'analytics', 'analytics.usage at fixed rate', 'p50Ms') ?? fromNote(r, 'analytics', /^analytics\.usage/, /p50 ([\d.]+) ms/) },
  { name: 'CSV export: API peak RSS', unit: 'MB', better: 'lower', read: (r) => figure(r, 'analytics', /CSV export/) },
  { name: 'analytics.platform, median of 5', unit: 'ms', better: 'lower', read: (r) => figure(r, 'analytics', /^analytics\.platform/) },
  { name: 'sdk: middleware throughput vs bare', unit: '%', better: 'higher', read: (r) => figure(r, 'sdk', /^middleware, enforce: false, throughput vs bare route/) },
  { name: 'sdk: middleware p99 added, half load', unit: 'ms', better: 'lower', read: (r) => figure(r, 'sdk', /^middleware, enforce: false, p99 added at \d+ req\/s/) },
  { name: 'sdk: middleware p99 added, saturation', unit: 'ms', better: 'lower', read: (r) => figure(r, 'sdk', /^middleware, enforce: false, p99 added( at saturation)? \(\d+ clients/) },
  { name: 'sdk: app CPU added per request', unit: 'µs', better: 'lower', read: (r) => figure(r, 'sdk', /^middleware, enforce: false, app process CPU added/) },
  { name: 'sdk: Fastify throughput vs bare', unit: '%', better: 'higher', read: (r) => figure(r, 'sdk', /^Fastify middleware, enforce: false, throughput vs bare route/) },
  { name: 'sdk: Fastify p99 added, half load', unit: 'ms', better: 'lower', read: (r) => figure(r, 'sdk', /^Fastify middleware, enforce: false, p99 added at \d+ req\/s/) },
  { name: 'sdk: Fastify app CPU added per request', unit: 'µs', better: 'lower', read: (r) => figure(r, 'sdk', /^Fastify middleware, enforce: false, app process CPU added/) },
  { name: 'sdk: SDK track + flush', unit: 'events/s', better: 'higher', read: (r) => figure(r, 'sdk', /^SDK throughput/) },
  { name: 'ingest (a) batch', unit: 'events/s', better: 'higher', read: (r) => figure(r, 'ingest', /^\(a\) batch ingest/) },
  { name: 'ingest (c) raw pg', unit: 'rows/s', better: 'higher', read: (r) => figure(r, 'ingest', /^\(c\) raw pg/) },
  { name: 'ingest (a) ÷ (c)', unit: '%', better: 'higher', read: (r) => figure(r, 'ingest', /^\(a\) ÷ \(c\)/) },
  { name: 'ingest (b) single-event', unit: 'req/s', better: 'higher', read: (r) => figure(r, 'ingest', /^\(b\) single-event/) },
  { name: 'ingest (b) latency p99', unit: 'ms', better: 'lower', read: (r) => figure(r, 'ingest', /^\(b\) latency p99/) },
];

function figure(r: Map<string, BenchJson>, bench: string, what: RegExp): number | null {
  const f = r.get(bench)?.figures.find((x) => what.test(x.what));
  return f && Number.isFinite(f.value) ? f.value : null;
}

function fromNote(r: Map<string, BenchJson>, bench: string, what: RegExp, pattern: RegExp): number | null {
  const m = pattern.exec(r.get(bench)?.figures.find((x) => what.test(x.what))?.baseline ?? '');
  return m ? Number(m[1]) : null;
}

function phaseMetric(r: Map<string, BenchJson>, bench: string, phase: string, metric: string): number | null {
  const v = r.get(bench)?.phases.find((p) => p.name === phase)?.metrics[metric];
  return typeof v === 'number' ? v : null;
}

function cpuAdded(r: Map<string, BenchJson>): number | null {
  const m = (phase: string, k: string) => phaseMetric(r, 'quota', phase, k);
  const parts = [m('enforced single ingest', 'apiCpuUsPerRequest'), m('enforced single ingest', 'redisCpuUsPerRequest'), m('unenforced single ingest', 'apiCpuUsPerRequest'), m('unenforced single ingest', 'redisCpuUsPerRequest')];
  if (parts.some((p) => p === null)) return null;
  const [ea, er, ua, ur] = parts as [number, number, number, number];
  return Math.round((ea + er - ua - ur) * 10) / 10;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const fmt = (v: number) => (Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : String(Math.round(v * 100) / 100));

function summary(values: number[]): { median: number | null; min: number | null; max: number | null; n: number; text: string } {
  if (values.length === 0) return { median: null, min: null, max: null, n: 0, text: '–' };
  const med = median(values);
  return { median: med, min: Math.min(...values), max: Math.max(...values), n: values.length, text: `${fmt(med)} (${fmt(Math.min(...values))} – ${fmt(Math.max(...values))})` };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const currentSha = git(ROOT, 'rev-parse', 'HEAD');
  const dirty = git(ROOT, 'status', '--porcelain', '--untracked-files=no') !== '';
  const baselineSha = prepareBaseline(opts);
  console.log(`baseline ${baselineSha.slice(0, 10)} (${opts.baselineDir}) vs current ${currentSha.slice(0, 10)}${dirty ? ' + uncommitted changes' : ''} (${ROOT}); ${opts.runs} run(s) each of: ${opts.benches.join(' ')}`);
  const sides = [
    { side: 'baseline' as const, dir: opts.baselineDir },
    { side: 'current' as const, dir: ROOT },
  ];
  const runs: { side: 'baseline' | 'current'; index: number; startedAt: string; load: number; loaded: boolean; status: number | null; values: Record<string, number | null> }[] = [];
  for (let i = 0; i < opts.runs; i++) {
    for (const { side, dir } of sides) {
      const { load, loaded } = await waitForQuiet(opts);
      const startedAt = new Date().toISOString();
      console.log(`run ${i + 1}/${opts.runs} ${side} (load ${load}${loaded ? ', LOADED' : ''}) …`);
      const { status, results } = await runBench(dir, opts.benches);
      const byBench = new Map(results.map((r) => [r.bench, r]));
      const values = Object.fromEntries(FIGURES.map((f) => [f.name, f.read(byBench)]));
      runs.push({ side, index: i + 1, startedAt, load, loaded, status, values });
      if (status !== 0) console.log(`  ${side} run ${i + 1} exited with ${status}: its figures are kept, check its output above`);
    }
  }
  const rows = FIGURES.map((f) => {
    const of = (side: 'baseline' | 'current') => runs.filter((r) => r.side === side).map((r) => r.values[f.name]).filter((v): v is number => v !== null && v !== undefined);
    const b = summary(of('baseline'));
    const c = summary(of('current'));
    const change = b.median !== null && c.median !== null && b.median !== 0 ? `${c.median >= b.median ? '+' : ''}${fmt((100 * (c.median - b.median)) / Math.abs(b.median))}%` : '';
    return { figure: f.name, unit: f.unit, better: f.better, baseline: b, current: c, change };
  }).filter((r) => r.baseline.n + r.current.n > 0);
  console.log(`\nmedian (min – max) of ${opts.runs} alternated run(s) each${runs.some((r) => r.loaded) ? '; some runs started with load above the limit (see JSON)' : ''}`);
  console.log(
    renderTable(
      ['figure', 'unit', 'better', `baseline ${baselineSha.slice(0, 7)}`, `current ${currentSha.slice(0, 7)}`, 'median change'],
      rows.map((r) => [r.figure, r.unit, r.better, r.baseline.text, r.current.text, r.change]),
      [false, false, false, true, true, true],
    ),
  );
  const file = path.join(ROOT, 'bench', 'results', `alternate-${new Date().toISOString().replace(/:/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify({ baseline: { ref: opts.baseline, sha: baselineSha, dir: opts.baselineDir }, current: { sha: currentSha, dirty, dir: ROOT }, options: opts, figures: rows, runs }, null, 2),
  );
  console.log(`results: ${path.relative(ROOT, file)}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
