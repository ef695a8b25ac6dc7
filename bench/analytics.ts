/**
 * Analytics benchmark (DESIGN §7, issue 5): over HTTP against the API as `npm start` runs it,
 *  (1) `analytics.usage` for one license over a year of daily data at a fixed 200 req/s,
 *      every request a different range, so the Redis cache rarely answers, after a warm-up at
 *      the same rate on other ranges (its p95 is reported beside, as the cold figure);
 *  (2) `analytics.platform` over N events (default 10M, 30 days, rolled up as the jobs would);
 *  (3) CSV export of M events (default 1M) of one license, streamed, with the API's peak RSS.
 *
 * Sizes: BENCH_ANALYTICS_RATE (200), BENCH_ANALYTICS_WARMUP_SECONDS (5), BENCH_ANALYTICS_SECONDS (20), BENCH_ANALYTICS_PLATFORM_EVENTS
 * (10,000,000), BENCH_ANALYTICS_EXPORT_EVENTS (1,000,000).
 */
import http from 'node:http';
import pg from 'pg';
import { recalculateRange } from '../src/domain/rollups/aggregate';
import { AnalyticsCache } from '../src/domain/analytics/cache';
import { createRedis } from '../src/lib/redis';
import { generateEvents } from './rollups';
import {
  type BenchContext,
  type BenchReport,
  type Figure,
  type PhaseReport,
  CpuMeter,
  RssSampler,
  createTenantWithLicense,
  intFromEnv,
  percentile,
  round,
  rssOf,
} from './lib';

const DAY = 86_400_000;
const HOUR = 3_600_000;

interface Config {
  rate: number;
  warmupSeconds: number;
  seconds: number;
  platformEvents: number;
  exportEvents: number;
}

export function analyticsConfigFromEnv(): Config {
  return {
    rate: intFromEnv('BENCH_ANALYTICS_RATE', 200),
    warmupSeconds: intFromEnv('BENCH_ANALYTICS_WARMUP_SECONDS', 5),
    seconds: intFromEnv('BENCH_ANALYTICS_SECONDS', 20),
    platformEvents: intFromEnv('BENCH_ANALYTICS_PLATFORM_EVENTS', 10_000_000),
    exportEvents: intFromEnv('BENCH_ANALYTICS_EXPORT_EVENTS', 1_000_000),
  };
}

const isoDate = (t: number) => new Date(t).toISOString().slice(0, 10);

function get(url: string, key: string, agent: http.Agent, onChunk?: (chunk: Buffer) => void): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'GET', headers: { authorization: `Bearer ${key}` }, agent }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        onChunk?.(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function measured<T>(pid: number, work: () => Promise<T>) {
  const rss = new RssSampler(pid, pid, 50);
  const cpu = new CpuMeter(pid);
  await rss.start();
  await cpu.start();
  const hrNowUs = () => Number(process.hrtime.bigint() / 1000n);
  const fromUs = hrNowUs();
  const started = performance.now();
  const result = await work();
  const wallSeconds = (performance.now() - started) / 1000;
  const toUs = hrNowUs();
  const cores = await cpu.stop();
  const memory = await rss.stop();
  const resources: PhaseReport['resources'] = {
    ...cores,
    wallSeconds: round(wallSeconds, 2),
    // the CPU profile (BENCH_CPU_PROFILE=1) is cut to this window per phase
    window: { fromUs, toUs },
    peakRssMb: memory.peakRssMb,
    peakTreeRssMb: memory.peakTreeRssMb,
    rssSamples: memory.samples,
    rssTimeline: memory.timeline,
  };
  return { result, resources, wallSeconds };
}

export async function runAnalyticsBench(ctx: BenchContext, config: Config): Promise<BenchReport> {
  const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 6 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const phases: PhaseReport[] = [];
  const figures: Figure[] = [];
  try {
    const now = Date.now();
    const today = Math.floor(now / DAY) * DAY;
    const tenant = await createTenantWithLicense(ctx.server, `analytics-${ctx.runId}`, 'enterprise');

    // (1) A year of final daily rollups (4 usage types) for one license.
    const yearStart = today - 366 * DAY;
    await pool.query(
      `INSERT INTO usage_rollups_daily (tenant_id, license_id, usage_type, date, timezone, quantity, event_count, max_quantity,
                                        distinct_users, error_count, duration_ms_sum)
       SELECT $1, $2, t, d::date, 'UTC', (100 + (extract(doy FROM d) * 7)::int % 50)::numeric, 100, 5, 10, 2, 1000
         FROM generate_series($3::timestamptz, $4::timestamptz, interval '1 day') AS d,
              unnest(ARRAY['api_call','tokens','storage.gb','seats']) AS t
       ON CONFLICT DO NOTHING`,
      [tenant.tenantId, tenant.licenseId, new Date(yearStart), new Date(today - DAY)],
    );
    await pool.query(
      `INSERT INTO rollup_windows (kind, start) SELECT 'daily', d FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 day') AS d
       ON CONFLICT DO NOTHING`,
      [new Date(yearStart), new Date(today - DAY)],
    );
    const url = (input: object) => `${ctx.server.baseUrl}/api/trpc/analytics.usage?input=${encodeURIComponent(JSON.stringify(input))}`;
    /** `seconds` of requests at `rate` per second, each sent on time whether or not earlier ones have been answered. */
    const atFixedRate = async (seconds: number, inputOf: (i: number) => object) => {
      const total = config.rate * seconds;
      const latencies: number[] = [];
      const bySecond: number[][] = Array.from({ length: seconds }, () => []);
      const statuses = new Map<number, number>();
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: total }, async (_, i) => {
          const due = t0 + (i * 1000) / config.rate;
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          const started = performance.now();
          const res = await get(url(inputOf(i)), tenant.ownerKey, agent);
          const took = performance.now() - started;
          latencies.push(took);
          bySecond[Math.floor(i / config.rate)]!.push(took);
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }),
      );
      return { total, latencies, p95BySecond: bySecond.map((s) => round(percentile(s, 95), 1)), statuses };
    };
    // Warm-up: the same load on longer ranges (500 days and more, so no measured answer is cached
    // by it) while the API compiles its hot paths and opens its pool's connections. Reported, not measured.
    const warm = await atFixedRate(config.warmupSeconds, (i) => {
      const end = today - DAY - (i % 60) * DAY;
      return { licenseId: tenant.licenseId, startDate: isoDate(end - (500 + Math.floor(i / 60)) * DAY), endDate: isoDate(end), granularity: 'daily' };
    });
    // A year back from a different end date each time: distinct inputs, so distinct cache keys.
    const load = await measured(ctx.server.pid, () =>
      atFixedRate(config.seconds, (i) => {
        const end = today - DAY - (i % 60) * DAY;
        return { licenseId: tenant.licenseId, startDate: isoDate(end - 364 * DAY - Math.floor(i / 60) * DAY), endDate: isoDate(end), granularity: 'daily' };
      }),
    );
    const { total, latencies, statuses } = load.result;
    console.log(`  analytics.usage p95 by second (ms): warm-up ${warm.p95BySecond.join(', ')}; measured ${load.result.p95BySecond.join(', ')}`);
    const errors = [...statuses, ...warm.statuses].filter(([s]) => s !== 200).map(([s, n]) => `${n} answers with status ${s}`);
    phases.push({
      name: 'analytics.usage at fixed rate',
      resources: load.resources,
      metrics: { requests: total, p50Ms: round(percentile(latencies, 50), 2), p95Ms: round(percentile(latencies, 95), 2), p99Ms: round(percentile(latencies, 99), 2), statuses: Object.fromEntries(statuses), p95BySecondMs: load.result.p95BySecond, warmup: { requests: warm.total, p95BySecondMs: warm.p95BySecond } },
      errors,
    });
    figures.push(
      {
        what: `analytics.usage, one license, a year daily, ${config.rate} req/s for ${config.seconds} s: p95`,
        value: round(percentile(latencies, 95), 2),
        unit: 'ms',
        digits: 2,
        target: { value: 10, better: 'lower' },
        baseline: `p50 ${round(percentile(latencies, 50), 2)} ms, p99 ${round(percentile(latencies, 99), 2)} ms; achieved ${round(total / load.wallSeconds)} req/s; cold (the ${config.warmupSeconds} s warm-up before) p95 ${round(percentile(warm.latencies, 95), 2)} ms`,
      },
    );

    // (2) The platform view over platformEvents events, rolled up as the jobs would.
    const platformTenant = await createTenantWithLicense(ctx.server, `platform-${ctx.runId}`, 'enterprise');
    const licenseIds = (
      await pool.query<{ id: string }>(
        `INSERT INTO licenses (id, tenant_id, name, plan_id, timezone, billing_anchor, updated_at)
         SELECT gen_random_uuid(), $1, 'platform ' || i, (SELECT id FROM plans WHERE code = 'enterprise'),
                (ARRAY['UTC','UTC','America/New_York','Asia/Kolkata'])[1 + i % 4], now(), now()
           FROM generate_series(1, 999) AS i RETURNING id`,
        [platformTenant.tenantId],
      )
    ).rows.map((r) => r.id);
    const spanEnd = Math.floor(now / HOUR) * HOUR - 2 * HOUR;
    await pool.query('SELECT tally_ensure_usage_event_partitions($1::date, 4)', [isoDate(spanEnd - 62 * DAY)]);
    console.log(`  generating ${config.platformEvents.toLocaleString('en-US')} events for the platform view…`);
    await generateEvents(pool, platformTenant.tenantId, [platformTenant.licenseId, ...licenseIds], config.platformEvents, spanEnd - 30 * DAY, 30 * DAY);
    await pool.query('VACUUM ANALYZE usage_events');
    // The API's own cache: answers it computed before this recalculation are not served after it.
    const redis = createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const analytics = new AnalyticsCache(redis, ctx.server.redisKeyPrefix, 1);
    await recalculateRange({ pool, analytics }, { tenantId: null, licenseId: null, startDate: isoDate(spanEnd - 31 * DAY), endDate: isoDate(spanEnd) }, { retentionDays: 90 });
    redis.disconnect();
    await pool.query(
      `INSERT INTO rollup_windows (kind, start) SELECT 'daily', d FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 day') AS d ON CONFLICT DO NOTHING`,
      [new Date(today - 32 * DAY), new Date(today - DAY)],
    );
    await pool.query(
      `INSERT INTO rollup_windows (kind, start) SELECT 'hourly', h FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 hour') AS h ON CONFLICT DO NOTHING`,
      [new Date(today - 3 * DAY), new Date(Math.floor(now / HOUR) * HOUR - HOUR)],
    );
    const platformTimes: number[] = [];
    const platform = await measured(ctx.server.pid, async () => {
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        const res = await get(`${ctx.server.baseUrl}/api/trpc/analytics.platform?input=${encodeURIComponent(JSON.stringify({ days: 30 }))}`, ctx.server.adminKey, agent);
        platformTimes.push(performance.now() - started);
        if (res.status !== 200) throw new Error(`analytics.platform answered ${res.status}`);
      }
    });
    phases.push({ name: 'analytics.platform', resources: platform.resources, metrics: { timesMs: platformTimes.map((t) => round(t)) }, errors: [] });
    figures.push({
      what: `analytics.platform over ${config.platformEvents.toLocaleString('en-US')} events (30 days): median of 5`,
      value: round(percentile(platformTimes, 50)),
      unit: 'ms',
      target: { value: 500, better: 'lower' },
      baseline: `min ${round(Math.min(...platformTimes))} ms, max ${round(Math.max(...platformTimes))} ms`,
    });

    // (3) CSV export of exportEvents events of one license, streamed.
    const exportTenant = await createTenantWithLicense(ctx.server, `export-${ctx.runId}`, 'enterprise');
    await generateEvents(pool, exportTenant.tenantId, [exportTenant.licenseId], config.exportEvents, spanEnd - 20 * DAY, 20 * DAY);
    let lines = 0;
    const before = (await rssOf(ctx.server.pid)) ?? 0;
    const exported = await measured(ctx.server.pid, () =>
      get(
        `${ctx.server.baseUrl}/api/export/events?format=csv&licenseId=${exportTenant.licenseId}&startDate=${isoDate(spanEnd - 21 * DAY)}&endDate=${isoDate(spanEnd + DAY)}`,
        exportTenant.ownerKey,
        agent,
        (chunk) => {
          for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines += 1;
        },
      ),
    );
    const exportErrors = exported.result.status !== 200 ? [`export answered ${exported.result.status}`] : lines - 1 !== config.exportEvents ? [`export had ${lines - 1} rows, expected ${config.exportEvents}`] : [];
    phases.push({ name: 'CSV export', resources: exported.resources, metrics: { rows: lines - 1, bytes: exported.result.bytes }, errors: exportErrors });
    figures.push(
      {
        what: `CSV export of ${config.exportEvents.toLocaleString('en-US')} events: API peak RSS`,
        value: exported.resources.peakRssMb,
        unit: 'MB',
        target: { value: 200, better: 'lower' },
        baseline: `before the export ${round(before / 1048576)} MB; ${round(exported.wallSeconds, 1)} s, ${round((lines - 1) / exported.wallSeconds)} rows/s, ${round(exported.result.bytes / 1048576)} MB of CSV`,
      },
    );
    return { name: 'analytics', figures, phases, config: { ...config } };
  } finally {
    agent.destroy();
    await pool.end();
  }
}
