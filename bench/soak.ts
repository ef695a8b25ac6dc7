/**
 * `npm run soak`: SOAK_SECONDS (600) of mixed traffic against Tally started as `npm start`
 * starts it (ROLE=all: API, workers and scheduler in one process), on a throw-away database:
 * single and batch ingest, analytics queries, CSV exports, calls with bad keys, and random
 * paths under /api/trpc. Every SOAK_SAMPLE_SECONDS (5) it samples the process's RSS
 * (/proc/<pid>/status) and V8 heap (/metrics), and reports the slope of each in MB per minute
 * (least squares over the second half of the run) and the error rate of each kind of call.
 * Not part of `npm test`. Results go to bench/results/soak-<time>.json.
 *
 * A call is an error when its answer is not the one that kind of call should get (ingest and
 * analytics 200, exports 200 with a complete body, bad keys 401 or 429, random paths 404), or
 * when no answer came. All traffic goes to 127.0.0.1.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import {
  type StartedServer,
  createDatabase,
  databaseUrl,
  dropDatabase,
  intFromEnv,
  randomAlphanumeric,
  renderTable,
  round,
  rssOf,
  scrapeMetrics,
  startServer,
  stopServer,
  writeResults,
  deleteRedisKeys,
} from './lib';

const SECONDS = intFromEnv('SOAK_SECONDS', 600);
const SAMPLE_SECONDS = intFromEnv('SOAK_SAMPLE_SECONDS', 5);

type Kind = 'ingest.single' | 'ingest.batch' | 'analytics' | 'export' | 'bad key' | 'random path';

interface KindStats {
  calls: number;
  errors: number;
  statuses: Record<string, number>;
  examples: string[];
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function call(url: string, options: { method: 'GET' | 'POST'; key?: string; body?: string }): Promise<{ status: number; body: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {};
    if (options.key) headers.authorization = `Bearer ${options.key}`;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    const req = http.request(url, { method: options.method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), complete: res.complete }));
      res.on('aborted', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), complete: false }));
      res.on('error', reject);
    });
    req.setTimeout(60_000, () => req.destroy(new Error('no answer within 60 s')));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Least-squares slope of y over x. */
function slope(points: readonly [number, number][]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  return sxx === 0 ? Number.NaN : sxy / sxx;
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const dbName = `tally_soak_${process.pid}_${Date.now()}`;
  await createDatabase(dbName);
  let server: StartedServer | undefined;
  const stats = new Map<Kind, KindStats>();
  const count = (kind: Kind, status: number | string, ok: boolean, detail?: string) => {
    const s = stats.get(kind) ?? { calls: 0, errors: 0, statuses: {}, examples: [] };
    s.calls += 1;
    s.statuses[String(status)] = (s.statuses[String(status)] ?? 0) + 1;
    if (!ok) {
      s.errors += 1;
      if (detail && s.examples.length < 5) s.examples.push(detail.slice(0, 300));
    }
    stats.set(kind, s);
  };
  try {
    server = await startServer({ databaseUrl: databaseUrl(dbName), env: { ROLE: 'all', LOG_LEVEL: 'warn' } });
    const base = server.baseUrl;
    const admin = server.adminKey;
    const post = async (procedure: string, input: unknown, key: string) => {
      const res = await call(`${base}/api/trpc/${procedure}`, { method: 'POST', key, body: JSON.stringify(input) });
      if (res.status !== 200) throw new Error(`${procedure}: HTTP ${res.status}: ${res.body.slice(0, 300)}`);
      return (JSON.parse(res.body) as { result: { data: any } }).result.data;
    };
    const tenant = await post('tenants.create', { name: 'Soak', slug: `soak-${randomAlphanumeric(8).toLowerCase()}` }, admin);
    const owner = tenant.apiKey.key as string;
    const reader = (await post('apiKeys.create', { name: 'soak reader', role: 'read' }, owner)).key as string;
    const zones = ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Adelaide'];
    const licenses: string[] = [];
    for (const timezone of zones) licenses.push((await post('licenses.create', { name: `soak ${timezone}`, plan: 'enterprise', timezone }, owner)).id);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
    const eventOf = () => ({
      licenseId: pick(licenses),
      usageType: pick(['api_call', 'tokens', 'storage.gb']),
      quantity: Math.floor(Math.random() * 10) + 1,
      occurredAt: new Date(Date.now() - Math.floor(Math.random() * 3 * 86_400_000)).toISOString(),
      userId: `user-${Math.floor(Math.random() * 500)}`,
      platform: pick(['web', 'ios', 'android']),
      statusCode: pick([200, 200, 200, 404, 500]),
      durationMs: Math.floor(Math.random() * 500),
      idempotencyKey: `soak-${randomAlphanumeric(16)}`,
    });

    const deadline = Date.now() + SECONDS * 1000;
    const loop = async (kind: Kind, pauseMs: number, once: () => Promise<{ ok: boolean; status: number; detail?: string }>) => {
      while (Date.now() < deadline) {
        try {
          const r = await once();
          count(kind, r.status, r.ok, r.ok ? undefined : r.detail);
        } catch (error) {
          count(kind, 'no answer', false, (error as Error).message);
        }
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    };
    const trpc = (procedure: string, key: string, input: unknown, method: 'GET' | 'POST') =>
      method === 'GET'
        ? call(`${base}/api/trpc/${procedure}?input=${encodeURIComponent(JSON.stringify(input))}`, { method, key })
        : call(`${base}/api/trpc/${procedure}`, { method, key, body: JSON.stringify(input) });
    const expect = (status: number | number[]) => (r: { status: number; body: string }) => {
      const ok = Array.isArray(status) ? status.includes(r.status) : r.status === status;
      return { ok, status: r.status, detail: `HTTP ${r.status}: ${r.body}` };
    };
    const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);

    const samples: { t: number; rssMb: number | null; heapUsedMb: number | null }[] = [];
    const sampler = async () => {
      const t0 = Date.now();
      while (Date.now() < deadline) {
        const rss = await rssOf(server!.pid);
        const metrics = await scrapeMetrics(base).catch(() => undefined);
        const heap = metrics?.get('tally_nodejs_heap_size_used_bytes');
        samples.push({ t: (Date.now() - t0) / 1000, rssMb: rss === null ? null : round(rss / 1048576, 1), heapUsedMb: heap === undefined ? null : round(heap / 1048576, 1) });
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_SECONDS * 1000));
      }
    };
    const progress = setInterval(() => {
      const last = samples.at(-1);
      const calls = [...stats.values()].reduce((s, k) => s + k.calls, 0);
      console.log(`  ${Math.round((SECONDS * 1000 - (deadline - Date.now())) / 1000)} s: ${calls} calls, RSS ${last?.rssMb} MB, heap ${last?.heapUsedMb} MB`);
    }, 60_000);

    console.log(`soak: ${SECONDS} s of mixed traffic against ${base} (pid ${server.pid}, ROLE=all)`);
    await Promise.all([
      sampler(),
      loop('ingest.single', 5, async () => expect(200)(await trpc('usage.trackEvent', owner, eventOf(), 'POST'))),
      loop('ingest.single', 5, async () => expect(200)(await trpc('usage.trackEvent', owner, eventOf(), 'POST'))),
      loop('ingest.batch', 50, async () => expect(200)(await trpc('usage.trackEvents', owner, { events: Array.from({ length: 200 }, eventOf) }, 'POST'))),
      loop('analytics', 20, async () =>
        expect(200)(
          await trpc(
            'analytics.usage',
            reader,
            { licenseId: pick(licenses), startDate: day(-Math.floor(Math.random() * 30) - 1), endDate: day(0), granularity: pick(['hourly', 'daily', 'weekly']) },
            'GET',
          ),
        ),
      ),
      loop('analytics', 50, async () => expect(200)(await trpc('analytics.breakdown', reader, { startDate: day(-7), endDate: day(0), by: pick(['platform', 'usageType', 'statusClass']) }, 'GET'))),
      loop('export', 1000, async () => {
        const r = await call(`${base}/api/export/events?format=csv&licenseId=${pick(licenses)}&startDate=${day(-3)}&endDate=${day(0)}`, { method: 'GET', key: reader });
        const ok = r.status === 200 && r.complete;
        return { ok, status: r.status, detail: `HTTP ${r.status} complete=${r.complete}: ${r.body.slice(0, 200)}` };
      }),
      loop('bad key', 20, async () => expect([401, 429])(await trpc('licenses.list', `tk_live_${randomAlphanumeric(24)}`, { limit: 5 }, 'GET'))),
      loop('random path', 20, async () => {
        const r = await call(`${base}/api/trpc/${randomBytes(32).toString('hex')}`, { method: pick(['GET', 'POST'] as const), key: owner, body: undefined });
        return expect(404)(r);
      }),
    ]);
    clearInterval(progress);

    const secondHalf = samples.filter((s) => s.t >= samples.at(-1)!.t / 2);
    const perMinute = (key: 'rssMb' | 'heapUsedMb') =>
      round(slope(secondHalf.filter((s) => s[key] !== null).map((s) => [s.t / 60, s[key]!] as [number, number])), 2);
    const kinds = [...stats.entries()].map(([kind, s]) => ({
      kind,
      calls: s.calls,
      errors: s.errors,
      errorRatePct: round((100 * s.errors) / Math.max(1, s.calls), 3),
      statuses: s.statuses,
      examples: s.examples,
    }));
    const rss = samples.map((s) => s.rssMb).filter((v): v is number => v !== null);
    const heap = samples.map((s) => s.heapUsedMb).filter((v): v is number => v !== null);
    const result = {
      startedAt: startedAt.toISOString(),
      seconds: SECONDS,
      sampleSeconds: SAMPLE_SECONDS,
      rss: { firstMb: rss[0], lastMb: rss.at(-1), peakMb: Math.max(...rss), slopeMbPerMinSecondHalf: perMinute('rssMb') },
      heapUsed: { firstMb: heap[0], lastMb: heap.at(-1), peakMb: heap.length ? Math.max(...heap) : null, slopeMbPerMinSecondHalf: perMinute('heapUsedMb') },
      kinds,
      samples,
      alive: server.child.exitCode === null && server.child.signalCode === null,
      serverOutputTail: server.output().slice(-3000),
    };
    console.log(
      renderTable(
        ['kind', 'calls', 'errors', 'error rate', 'statuses'],
        kinds.map((k) => [k.kind, String(k.calls), String(k.errors), `${k.errorRatePct}%`, JSON.stringify(k.statuses)]),
        [false, true, true, true, false],
      ),
    );
    console.log(`RSS: ${result.rss.firstMb} → ${result.rss.lastMb} MB (peak ${result.rss.peakMb}), slope over the second half ${result.rss.slopeMbPerMinSecondHalf} MB/min`);
    console.log(`heap used: ${result.heapUsed.firstMb} → ${result.heapUsed.lastMb} MB (peak ${result.heapUsed.peakMb}), slope ${result.heapUsed.slopeMbPerMinSecondHalf} MB/min`);
    console.log(`process alive at the end: ${result.alive}`);
    console.log(`results: ${await writeResults('soak', startedAt, result)}`);
    if (!result.alive) process.exitCode = 1;
  } finally {
    if (server) {
      const prefix = server.redisKeyPrefix;
      await stopServer(server);
      await deleteRedisKeys(prefix);
    }
    await dropDatabase(dbName);
    agent.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
