/**
 * PostgreSQL scale-out engines (README "Scaling"), in one run, side by side:
 *  (1) batch ingest (1,000-event tRPC calls, N clients) into the API straight to PostgreSQL vs
 *      into a second API whose DATABASE_URL is PgBouncer in transaction mode (DATABASE_DIRECT_URL
 *      beside it), alternating rounds so both see the same machine;
 *  (2) analytics.usage (one license, distinct daily ranges, so the Redis cache misses) p50/p95
 *      from the primary directly, through PgBouncer, and from a streaming replica
 *      (a third API with DATABASE_READ_URL; answers counted by their X-Tally-Data-Source).
 * PgBouncer and the replica are real servers started here on their own ports and folders
 * (tests/helpers/pg-servers.ts) and stopped afterwards. On 2 cores the point is each engine's
 * overhead, not a speed-up.
 *
 * Sizes: BENCH_SCALE_PG_BATCHES (40 calls per engine), BENCH_SCALE_PG_CLIENTS (4),
 * BENCH_SCALE_PG_QUERIES (300 per engine), BENCH_SCALE_PG_CONCURRENCY (8).
 */
import http from 'node:http';
import pg from 'pg';
import { recalculateRange } from '../src/domain/rollups/aggregate';
import { AnalyticsCache } from '../src/domain/analytics/cache';
import { createRedis } from '../src/lib/redis';
import { startPgBouncer, startReplica, waitForReplay, type PgBouncer, type Replica } from '../tests/helpers/pg-servers';
import {
  type BenchContext,
  type BenchReport,
  type Figure,
  type PhaseReport,
  type StartedServer,
  createTenantWithLicense,
  deleteRedisKeys,
  httpRequest,
  intFromEnv,
  measurePhase,
  percentile,
  round,
  startServer,
  stopServer,
} from './lib';

const DAY = 86_400_000;
const HOUR = 3_600_000;

interface Config {
  batches: number;
  clients: number;
  queries: number;
  concurrency: number;
}

export function scalePgConfigFromEnv(): Config {
  return {
    batches: intFromEnv('BENCH_SCALE_PG_BATCHES', 40),
    clients: intFromEnv('BENCH_SCALE_PG_CLIENTS', 4),
    queries: intFromEnv('BENCH_SCALE_PG_QUERIES', 300),
    concurrency: intFromEnv('BENCH_SCALE_PG_CONCURRENCY', 8),
  };
}

const isoDate = (t: number) => new Date(t).toISOString().slice(0, 10);

/** Runs `count` tasks with at most `width` at once. */
async function pooled(count: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

interface IngestResult {
  events: number;
  seconds: number;
  latenciesMs: number[];
  errors: string[];
}

async function ingest(server: StartedServer, key: string, licenseId: string, tag: string, batches: number, clients: number): Promise<IngestResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const now = Date.now();
  const latenciesMs: number[] = [];
  const errors: string[] = [];
  let events = 0;
  const started = performance.now();
  await pooled(batches, clients, async (b) => {
    const body = JSON.stringify({
      events: Array.from({ length: 1000 }, (_, i) => {
        const n = b * 1000 + i;
        return {
          licenseId,
          usageType: ['api_call', 'tokens', 'storage'][n % 3],
          quantity: `${(n % 97) + 0.5}`,
          occurredAt: new Date(now - ((n * 7919) % (20 * DAY))).toISOString(),
          idempotencyKey: `${tag}-${n}`,
          userId: `user-${n % 500}`,
          statusCode: n % 23 === 0 ? 500 : 200,
          durationMs: n % 400,
        };
      }),
    });
    const t = performance.now();
    const res = await httpRequest(`${server.baseUrl}/api/trpc/usage.trackEvents`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body, agent });
    latenciesMs.push(performance.now() - t);
    if (res.status !== 200) errors.push(`trackEvents HTTP ${res.status}: ${res.body.slice(0, 200)}`);
    else events += (JSON.parse(res.body) as { result: { data: { accepted: number } } }).result.data.accepted;
  });
  agent.destroy();
  return { events, seconds: (performance.now() - started) / 1000, latenciesMs, errors };
}

interface AnalyticsResult {
  latenciesMs: number[];
  fromReplica: number;
  maxLagMs: number;
  errors: string[];
}

/** Distinct inputs (ranges × usage type filters), the same list for every engine. */
function analyticsInputs(licenseId: string, count: number): unknown[] {
  const today = Date.now();
  const inputs: unknown[] = [];
  for (let span = 1; inputs.length < count && span <= 20; span++) {
    for (let start = 20; start >= span - 1 && inputs.length < count; start--) {
      for (const usageType of [undefined, 'api_call', 'tokens']) {
        if (inputs.length >= count) break;
        inputs.push({ licenseId, usageType, startDate: isoDate(today - start * DAY), endDate: isoDate(today - (start - span + 1) * DAY), granularity: 'daily', timezone: 'UTC' });
      }
    }
  }
  return inputs;
}

async function analytics(server: StartedServer, key: string, inputs: unknown[], concurrency: number): Promise<AnalyticsResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const result: AnalyticsResult = { latenciesMs: [], fromReplica: 0, maxLagMs: 0, errors: [] };
  await pooled(inputs.length, concurrency, async (i) => {
    const url = `${server.baseUrl}/api/trpc/analytics.usage?input=${encodeURIComponent(JSON.stringify(inputs[i]))}`;
    const t = performance.now();
    const res = await httpRequest(url, { method: 'GET', headers: { authorization: `Bearer ${key}` }, agent });
    result.latenciesMs.push(performance.now() - t);
    if (res.status !== 200) result.errors.push(`analytics.usage HTTP ${res.status}: ${res.body.slice(0, 200)}`);
    if (res.headers['x-tally-data-source'] === 'replica') {
      result.fromReplica += 1;
      result.maxLagMs = Math.max(result.maxLagMs, Number(res.headers['x-tally-data-lag-ms']));
    }
  });
  agent.destroy();
  return result;
}

export async function runScalePgBench(ctx: BenchContext, config: Config): Promise<BenchReport> {
  const phases: PhaseReport[] = [];
  const started: StartedServer[] = [];
  let bouncer: PgBouncer | undefined;
  let replica: Replica | undefined;
  try {
    console.log('  starting PgBouncer (transaction mode) and a streaming replica…');
    bouncer = await startPgBouncer({ poolSize: 10, primaryUrl: ctx.databaseUrl });
    replica = await startReplica(ctx.databaseUrl);
    const viaBouncer = await startServer({ databaseUrl: bouncer.urlOf(ctx.databaseUrl), env: { DATABASE_DIRECT_URL: ctx.databaseUrl } });
    started.push(viaBouncer);
    const withReplica = await startServer({ databaseUrl: ctx.databaseUrl, env: { DATABASE_READ_URL: replica.urlOf(ctx.databaseUrl), DATABASE_READ_MAX_LAG_MS: '5000' } });
    started.push(withReplica);
    const { tenantId, ownerKey, licenseId } = await createTenantWithLicense(ctx.server, `scale-pg-${ctx.runId}`, 'enterprise');

    // (1) ingest, alternating rounds
    const engines = { direct: ctx.server, pgbouncer: viaBouncer } as const;
    const ingested: Record<keyof typeof engines, IngestResult[]> = { direct: [], pgbouncer: [] };
    for (let round = 0; round < 2; round++) {
      for (const [name, server] of Object.entries(engines) as [keyof typeof engines, StartedServer][]) {
        const { result, resources } = await measurePhase(server, () => ingest(server, ownerKey, licenseId, `${ctx.runId}-${name}-${round}`, Math.ceil(config.batches / 2), config.clients));
        ingested[name].push(result);
        phases.push({ name: `ingest ${name} (round ${round + 1})`, resources, metrics: { events: result.events, seconds: round2(result.seconds) }, errors: result.errors.slice(0, 5) });
      }
    }

    // Roll up what was ingested, as the jobs would, so analytics reads rollups and raw events as in production.
    const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 2 });
    const redis = createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    try {
      const now = Date.now();
      await recalculateRange({ pool, analytics: new AnalyticsCache(redis, ctx.server.redisKeyPrefix, 1) }, { tenantId, licenseId, startDate: isoDate(now - 21 * DAY), endDate: isoDate(now) }, { retentionDays: 90 });
      await pool.query(
        `INSERT INTO rollup_windows (kind, start) SELECT 'hourly', h FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 hour') AS h ON CONFLICT DO NOTHING`,
        [new Date(now - 21 * DAY), new Date(Math.floor(now / HOUR) * HOUR - HOUR)],
      );
    } finally {
      redis.disconnect();
      await pool.end();
    }
    await waitForReplay(ctx.databaseUrl, replica.urlOf(ctx.databaseUrl));

    // (2) analytics: the same distinct inputs on each engine (each API has its own cache prefix)
    const inputs = analyticsInputs(licenseId, config.queries);
    const readers = { primary: ctx.server, pgbouncer: viaBouncer, replica: withReplica } as const;
    const read: Partial<Record<keyof typeof readers, AnalyticsResult>> = {};
    for (const [name, server] of Object.entries(readers) as [keyof typeof readers, StartedServer][]) {
      const { result, resources } = await measurePhase(server, () => analytics(server, ownerKey, inputs, config.concurrency));
      read[name] = result;
      phases.push({
        name: `analytics ${name}`,
        resources,
        metrics: { requests: result.latenciesMs.length, fromReplica: result.fromReplica, maxLagMs: result.maxLagMs },
        errors: result.errors.slice(0, 5),
      });
    }
    if (read.replica && read.replica.fromReplica === 0) phases.at(-1)!.errors.push('no answer came from the replica');

    const rate = (rs: IngestResult[]) => rs.reduce((s, r) => s + r.events, 0) / rs.reduce((s, r) => s + r.seconds, 0);
    const lat = (rs: IngestResult[]) => rs.flatMap((r) => r.latenciesMs);
    const directRate = rate(ingested.direct);
    const bouncerRate = rate(ingested.pgbouncer);
    const p = (samples: number[], q: number) => round(percentile(samples, q), 2);
    const figures: Figure[] = [
      { what: 'batch ingest, direct', value: directRate, unit: 'events/s', baseline: `call p50 ${p(lat(ingested.direct), 50)} ms, p95 ${p(lat(ingested.direct), 95)} ms` },
      {
        what: 'batch ingest, through PgBouncer',
        value: bouncerRate,
        unit: 'events/s',
        baseline: `${round((bouncerRate / directRate) * 100, 1)}% of direct; call p50 ${p(lat(ingested.pgbouncer), 50)} ms, p95 ${p(lat(ingested.pgbouncer), 95)} ms`,
      },
    ];
    for (const [name, r] of Object.entries(read) as [string, AnalyticsResult][]) {
      figures.push({ what: `analytics.usage p50, ${name}`, value: percentile(r.latenciesMs, 50), unit: 'ms', digits: 2 });
      figures.push({
        what: `analytics.usage p95, ${name}`,
        value: percentile(r.latenciesMs, 95),
        unit: 'ms',
        digits: 2,
        baseline: name === 'replica' ? `${r.fromReplica}/${r.latenciesMs.length} answered by the replica, lag bound ≤ ${r.maxLagMs} ms` : undefined,
      });
    }
    return {
      name: 'scale-pg',
      figures,
      phases,
      config: { ...config, pgbouncer: { pool_mode: 'transaction', default_pool_size: 10 }, replica: 'pg_basebackup -R, hot_standby_feedback = on' },
      extra: {
        side_by_side: {
          ingest: Object.fromEntries(Object.entries(ingested).map(([k, rs]) => [k, { eventsPerSecond: round(rate(rs)), p50Ms: p(lat(rs), 50), p95Ms: p(lat(rs), 95) }])),
          analytics: Object.fromEntries(Object.entries(read).map(([k, r]) => [k, { p50Ms: p(r.latenciesMs, 50), p95Ms: p(r.latenciesMs, 95), fromReplica: r.fromReplica }])),
        },
      },
    };
  } finally {
    for (const server of started) {
      await stopServer(server);
      await deleteRedisKeys(server.redisKeyPrefix).catch(() => undefined);
    }
    await bouncer?.stop();
    await replica?.stop();
  }
}

const round2 = (v: number) => round(v, 2);
