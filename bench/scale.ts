/**
 * Scale benchmark (issue 16, part 4): the same load through 1 and then 2 API processes
 * (ROLE=api, started as `npm start` starts them, on one database and one Redis key prefix),
 * side by side in one run:
 *  - batch ingest: `usage.trackEvents`, 1,000 events a call, 4 clients;
 *  - single-event ingest: `usage.trackEvent`, 64 keep-alive clients for a fixed time;
 *  - analytics: `analytics.usage` for one license with a year of daily rollups, 16 clients for
 *    a fixed time, every request a different range (the Redis cache rarely answers).
 * Clients spread their calls round-robin over the processes, as a load balancer would. Each
 * phase has a license of its own, and the batch phases check the rows they stored.
 *
 * On a machine whose cores PostgreSQL and both API processes share, the point is what a second
 * process costs or buys there, not a speed-up. Sizes: BENCH_SCALE_BATCH_CALLS (60),
 * BENCH_SCALE_BATCH_CLIENTS (4), BENCH_SCALE_SINGLE_SECONDS (10), BENCH_SCALE_SINGLE_CLIENTS (64),
 * BENCH_SCALE_ANALYTICS_SECONDS (10), BENCH_SCALE_ANALYTICS_CLIENTS (16).
 */
import http from 'node:http';
import pg from 'pg';
import {
  type BenchContext,
  type BenchReport,
  type Figure,
  type PhaseReport,
  type StartedServer,
  CpuMeter,
  createTenantWithLicense,
  httpRequest,
  intFromEnv,
  measurePhase,
  percentile,
  round,
  startServer,
  stopServer,
} from './lib';

const DAY = 86_400_000;

interface ScaleConfig {
  batchCalls: number;
  batchClients: number;
  batchSize: number;
  singleSeconds: number;
  singleClients: number;
  analyticsSeconds: number;
  analyticsClients: number;
}

export function scaleConfigFromEnv(): ScaleConfig {
  return {
    batchCalls: intFromEnv('BENCH_SCALE_BATCH_CALLS', 60),
    batchClients: intFromEnv('BENCH_SCALE_BATCH_CLIENTS', 4),
    batchSize: 1000,
    singleSeconds: intFromEnv('BENCH_SCALE_SINGLE_SECONDS', 10),
    singleClients: intFromEnv('BENCH_SCALE_SINGLE_CLIENTS', 64),
    analyticsSeconds: intFromEnv('BENCH_SCALE_ANALYTICS_SECONDS', 10),
    analyticsClients: intFromEnv('BENCH_SCALE_ANALYTICS_CLIENTS', 16),
  };
}

const isoDate = (t: number) => new Date(t).toISOString().slice(0, 10);
const USAGE_TYPES = ['api_call', 'tokens', 'storage_gb', 'download'];

function event(licenseId: string, key: string, now: number) {
  const usageType = USAGE_TYPES[Math.floor(Math.random() * USAGE_TYPES.length)]!;
  return {
    licenseId,
    usageType,
    quantity: usageType === 'storage_gb' ? (Math.random() * 10).toFixed(3) : Math.floor(Math.random() * 50) + 1,
    occurredAt: new Date(now - Math.floor(Math.random() * 3_600_000)).toISOString(),
    idempotencyKey: key,
    userId: `user-${Math.floor(Math.random() * 500)}`,
    statusCode: Math.random() < 0.9 ? 200 : 500,
    durationMs: Math.floor(Math.random() * 400) + 2,
  };
}

interface Outcome {
  requests: number;
  seconds: number;
  latencies: number[];
  errors: string[];
  /** Requests answered by each process. */
  perProcess: number[];
  extra?: Record<string, unknown>;
}

/** Closed-loop clients calling `once(server)` on the servers in turn until `until()` says stop. */
async function drive(
  servers: StartedServer[],
  clients: number,
  until: (started: number, elapsedMs: number) => boolean,
  once: (server: StartedServer, agent: http.Agent, i: number) => Promise<string | null>,
): Promise<Outcome> {
  const agents = servers.map(() => new http.Agent({ keepAlive: true, maxSockets: clients }));
  const latencies: number[] = [];
  const errors: string[] = [];
  const perProcess = servers.map(() => 0);
  let started = 0;
  const t0 = performance.now();
  try {
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (!until(started, performance.now() - t0) && errors.length < 20) {
          const i = started++;
          const k = i % servers.length;
          const begin = performance.now();
          const error = await once(servers[k]!, agents[k]!, i).catch((e: unknown) => String(e));
          if (error) errors.push(error);
          else {
            latencies.push(performance.now() - begin);
            perProcess[k]! += 1;
          }
        }
      }),
    );
  } finally {
    for (const a of agents) a.destroy();
  }
  return { requests: latencies.length, seconds: (performance.now() - t0) / 1000, latencies, errors, perProcess };
}

export async function runScaleBench(ctx: BenchContext, config: ScaleConfig): Promise<BenchReport> {
  const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 3 });
  const phases: PhaseReport[] = [];
  const figures: Figure[] = [];
  // The second process shares the first one's database, Redis key prefix and admin key: one deployment, two processes.
  const second = await startServer({
    databaseUrl: ctx.databaseUrl,
    env: { REDIS_KEY_PREFIX: ctx.server.redisKeyPrefix, BOOTSTRAP_ADMIN_KEY: ctx.server.adminKey, ...(process.env.REDIS_CLUSTER_NODES ? { REDIS_CLUSTER_NODES: process.env.REDIS_CLUSTER_NODES } : {}) },
  });
  const layouts: { name: string; servers: StartedServer[] }[] = [
    { name: '1 API process', servers: [ctx.server] },
    { name: '2 API processes', servers: [ctx.server, second] },
  ];
  try {
    const results: Record<string, Record<string, Outcome>> = {};
    /** Runs one phase, measuring the CPU of every API process of the layout. */
    const phase = async (workload: string, layout: (typeof layouts)[number], run: () => Promise<Outcome>) => {
      const others = layout.servers.slice(1).map((s) => new CpuMeter(s.pid));
      for (const m of others) await m.start();
      const { result, resources } = await measurePhase(ctx.server, run);
      const otherCores = await Promise.all(others.map((m) => m.stop()));
      const apiCores = round(resources.apiCores + otherCores.reduce((s, c) => s + c.apiCores, 0), 2);
      (results[workload] ??= {})[layout.name] = result;
      phases.push({
        name: `${workload}, ${layout.name}`,
        resources,
        metrics: {
          requests: result.requests,
          seconds: round(result.seconds, 2),
          perProcess: result.perProcess,
          p50Ms: round(percentile(result.latencies, 50), 2),
          p95Ms: round(percentile(result.latencies, 95), 2),
          p99Ms: round(percentile(result.latencies, 99), 2),
          apiCoresAllProcesses: apiCores,
          ...result.extra,
        },
        errors: result.errors,
      });
    };

    // ---------------------------------------------------------------- batch ingest
    for (const layout of layouts) {
      const tenant = await createTenantWithLicense(ctx.server, `scale-batch-${layout.servers.length}-${ctx.runId}`, 'enterprise');
      const keyPrefix = `scale-${ctx.runId}-${layout.servers.length}-`;
      let seq = 0;
      await phase('batch ingest', layout, async () => {
        const outcome = await drive(
          layout.servers,
          config.batchClients,
          (started) => started >= config.batchCalls,
          async (server, agent) => {
            const now = Date.now();
            const events = Array.from({ length: config.batchSize }, () => event(tenant.licenseId, `${keyPrefix}${seq++}`, now));
            const res = await httpRequest(`${server.baseUrl}/api/trpc/usage.trackEvents`, {
              method: 'POST',
              headers: { authorization: `Bearer ${tenant.ownerKey}` },
              body: JSON.stringify({ events }),
              agent,
            });
            if (res.status !== 200) return `trackEvents: HTTP ${res.status}: ${res.body.slice(0, 200)}`;
            const data = (JSON.parse(res.body) as { result: { data: { accepted: number } } }).result.data;
            return data.accepted === config.batchSize ? null : `accepted ${data.accepted} of ${config.batchSize}`;
          },
        );
        const stored = Number((await pool.query('SELECT count(*) AS n FROM usage_events WHERE license_id = $1', [tenant.licenseId])).rows[0].n);
        if (stored !== outcome.requests * config.batchSize) outcome.errors.push(`stored ${stored} events, answered ${outcome.requests * config.batchSize} as accepted`);
        outcome.extra = { events: outcome.requests * config.batchSize, eventsPerSecond: round((outcome.requests * config.batchSize) / outcome.seconds) };
        return outcome;
      });
    }

    // ---------------------------------------------------------------- single-event ingest
    for (const layout of layouts) {
      const tenant = await createTenantWithLicense(ctx.server, `scale-single-${layout.servers.length}-${ctx.runId}`, 'enterprise');
      const keyPrefix = `scale-single-${ctx.runId}-${layout.servers.length}-`;
      await phase('single-event ingest', layout, async () => {
        const outcome = await drive(
          layout.servers,
          config.singleClients,
          (_, elapsed) => elapsed >= config.singleSeconds * 1000,
          async (server, agent, i) => {
            const res = await httpRequest(`${server.baseUrl}/api/trpc/usage.trackEvent`, {
              method: 'POST',
              headers: { authorization: `Bearer ${tenant.ownerKey}` },
              body: JSON.stringify(event(tenant.licenseId, `${keyPrefix}${i}`, Date.now())),
              agent,
            });
            return res.status === 200 ? null : `trackEvent: HTTP ${res.status}: ${res.body.slice(0, 200)}`;
          },
        );
        outcome.extra = { requestsPerSecond: round(outcome.requests / outcome.seconds) };
        return outcome;
      });
    }

    // ---------------------------------------------------------------- analytics
    const today = Math.floor(Date.now() / DAY) * DAY;
    for (const layout of layouts) {
      const tenant = await createTenantWithLicense(ctx.server, `scale-analytics-${layout.servers.length}-${ctx.runId}`, 'enterprise');
      await pool.query(
        `INSERT INTO usage_rollups_daily (tenant_id, license_id, usage_type, date, timezone, quantity, event_count, max_quantity,
                                          distinct_users, error_count, duration_ms_sum)
         SELECT $1, $2, t, d::date, 'UTC', (100 + (extract(doy FROM d) * 7)::int % 50)::numeric, 100, 5, 10, 2, 1000
           FROM generate_series($3::timestamptz, $4::timestamptz, interval '1 day') AS d,
                unnest(ARRAY['api_call','tokens','storage.gb','seats']) AS t
         ON CONFLICT DO NOTHING`,
        [tenant.tenantId, tenant.licenseId, new Date(today - 366 * DAY), new Date(today - DAY)],
      );
      await pool.query(
        `INSERT INTO rollup_windows (kind, start) SELECT 'daily', d FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 day') AS d
         ON CONFLICT DO NOTHING`,
        [new Date(today - 366 * DAY), new Date(today - DAY)],
      );
      // A few warm-up requests per process on ranges the phase never asks for, not measured.
      for (const server of layout.servers) {
        for (let k = 0; k < 5; k++) {
          const input = { licenseId: tenant.licenseId, startDate: isoDate(today - (700 + k) * DAY), endDate: isoDate(today - 370 * DAY), granularity: 'daily' };
          await httpRequest(`${server.baseUrl}/api/trpc/analytics.usage?input=${encodeURIComponent(JSON.stringify(input))}`, {
            method: 'GET',
            headers: { authorization: `Bearer ${tenant.ownerKey}` },
          });
        }
      }
      await phase('analytics.usage', layout, () => {
        const outcome = drive(
          layout.servers,
          config.analyticsClients,
          (_, elapsed) => elapsed >= config.analyticsSeconds * 1000,
          async (server, agent, i) => {
            // a year back from a different end date each time, and a different length: distinct cache keys
            const end = today - DAY - (i % 60) * DAY;
            const input = { licenseId: tenant.licenseId, startDate: isoDate(end - 300 * DAY - Math.floor(i / 60) * DAY), endDate: isoDate(end), granularity: 'daily' };
            const res = await httpRequest(`${server.baseUrl}/api/trpc/analytics.usage?input=${encodeURIComponent(JSON.stringify(input))}`, {
              method: 'GET',
              headers: { authorization: `Bearer ${tenant.ownerKey}` },
              agent,
            });
            return res.status === 200 ? null : `analytics.usage: HTTP ${res.status}: ${res.body.slice(0, 200)}`;
          },
        );
        return outcome.then((o) => ({ ...o, extra: { requestsPerSecond: round(o.requests / o.seconds) } }));
      });
    }

    // ---------------------------------------------------------------- figures, side by side
    const rate = (o: Outcome | undefined, per: number) => (o ? (o.requests * per) / o.seconds : Number.NaN);
    const side = (workload: string, what: string, unit: string, value: (o: Outcome | undefined) => number, digits = 0) => {
      const one = value(results[workload]?.['1 API process']);
      const two = value(results[workload]?.['2 API processes']);
      figures.push(
        { what: `${what}, 1 API process`, value: round(one, digits), unit, digits },
        { what: `${what}, 2 API processes`, value: round(two, digits), unit, digits, baseline: `${round(two / one, 2)}× the 1-process figure of this run` },
      );
    };
    side('batch ingest', `batch ingest (${config.batchSize}-event calls, ${config.batchClients} clients)`, 'events/s', (o) => rate(o, config.batchSize));
    side('batch ingest', 'batch ingest p95 per call', 'ms', (o) => percentile(o?.latencies ?? [], 95), 1);
    side('single-event ingest', `single-event ingest (${config.singleClients} clients)`, 'req/s', (o) => rate(o, 1));
    side('single-event ingest', 'single-event ingest p95', 'ms', (o) => percentile(o?.latencies ?? [], 95), 2);
    side('analytics.usage', `analytics.usage, a year daily (${config.analyticsClients} clients)`, 'req/s', (o) => rate(o, 1));
    side('analytics.usage', 'analytics.usage p95', 'ms', (o) => percentile(o?.latencies ?? [], 95), 2);
    return { name: 'scale', figures, phases, config: { ...config }, extra: { secondProcessPid: second.pid } };
  } finally {
    const code = await stopServer(second);
    if (code !== 0) console.error(`the second API process exited with ${code}:\n${second.output().slice(-2000)}`);
    await pool.end();
  }
}
