/**
 * Distinct users at volume (issue 16, part 5): one license with E events (default 1,000,000)
 * over 20 days and about U distinct users (default 20,000), rolled up as the jobs would.
 * Side by side, in one run, over the same ranges:
 *  - before: the count(DISTINCT user_id) over raw events that analytics.usage ran until user
 *    sets (distinctUsersFromRawEvents, the statement itself);
 *  - after: the user-set statement (distinctUsersOfPlans over the request's own source plan);
 *  - the whole analytics.usage request over HTTP (after), every input a different one so the
 *    API's cache never answers;
 * and the size of the user sets (daily_user_sets + usage_user_numbers) per user-day.
 *
 * Ranges: the 20 whole days (all final), and the same ending today (the partial day read raw).
 * Sizes: BENCH_UU_EVENTS (1,000,000), BENCH_UU_USERS (20,000), BENCH_UU_SAMPLES (60 per statement and range).
 */
import http from 'node:http';
import pg from 'pg';
import { recalculateRange } from '../src/domain/rollups/aggregate';
import { AnalyticsCache } from '../src/domain/analytics/cache';
import { bucketsOf, rangeOf } from '../src/domain/analytics/buckets';
import { distinctUsersFromRawEvents, planGroups, type SeriesScope } from '../src/domain/usage-reader/series';
import { distinctUsersOfPlans } from '../src/domain/usage-reader/distinct-users';
import { createRedis } from '../src/lib/redis';
import { type BenchContext, type BenchReport, type Figure, type PhaseReport, createTenantWithLicense, intFromEnv, measurePhase, percentile, round } from './lib';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const TYPES = ['api_call', 'tokens', 'storage.gb', 'seats'];

interface Config {
  events: number;
  users: number;
  samples: number;
}

export function uniqueUsersConfigFromEnv(): Config {
  return {
    events: intFromEnv('BENCH_UU_EVENTS', 1_000_000),
    users: intFromEnv('BENCH_UU_USERS', 20_000),
    samples: intFromEnv('BENCH_UU_SAMPLES', 60),
  };
}

const isoDate = (t: number) => new Date(t).toISOString().slice(0, 10);

function get(url: string, key: string, agent: http.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'GET', headers: { authorization: `Bearer ${key}` }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

export async function runUniqueUsersBench(ctx: BenchContext, config: Config): Promise<BenchReport> {
  const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 4 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const phases: PhaseReport[] = [];
  const figures: Figure[] = [];
  try {
    const now = Date.now();
    const today = Math.floor(now / DAY) * DAY;
    const lastHour = Math.floor(now / HOUR) * HOUR;
    const first = today - 20 * DAY;
    const tenant = await createTenantWithLicense(ctx.server, `uusers-${ctx.runId}`, 'enterprise'); // zone UTC
    await pool.query('SELECT tally_ensure_usage_event_partitions($1::date, 3)', [isoDate(first - 31 * DAY)]);

    // E events from the first day's midnight to the last full hour; user of event i: a multiplicative hash of i, so every user is active on most days.
    console.log(`  generating ${config.events.toLocaleString('en-US')} events over 20 days for ~${config.users.toLocaleString('en-US')} users…`);
    const span = lastHour - first;
    const generated = await measurePhase(ctx.server, async () => {
      const sessions = 4;
      const chunk = 250_000;
      for (let at = 0; at < config.events; at += chunk) {
        const last = Math.min(config.events, at + chunk) - 1;
        await Promise.all(
          Array.from({ length: sessions }, (_, s) =>
            pool.query(
              `INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, payload_hash, user_id, status_code, duration_ms)
               SELECT gen_random_uuid(), $1, $2, (ARRAY['api_call','tokens','storage.gb','seats'])[1 + i % 4], 1,
                      to_timestamp(($3::bigint + i * $4::bigint / $5::bigint) / 1000.0), 'bench',
                      'user-' || ((i * 2654435761) % $6), CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END, i % 900
                 FROM generate_series($7::bigint, $8::bigint, $9) AS i`,
              [tenant.tenantId, tenant.licenseId, first, span, config.events, config.users, at + s, last, sessions],
            ),
          ),
        );
      }
      await pool.query('VACUUM ANALYZE usage_events');
    });
    phases.push({ name: 'generate events', resources: generated.resources, metrics: { events: config.events }, errors: [] });

    // Rolled up as the jobs would: hourly and daily rows (and user sets) of every day, windows recorded.
    const redis = createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const analytics = new AnalyticsCache(redis, ctx.server.redisKeyPrefix, 1);
    const rolled = await measurePhase(ctx.server, async () => {
      await recalculateRange({ pool, analytics }, { tenantId: tenant.tenantId, licenseId: tenant.licenseId, startDate: isoDate(first - DAY), endDate: isoDate(today) }, { retentionDays: 90 });
      await pool.query(`INSERT INTO rollup_windows (kind, start) SELECT 'daily', d FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 day') AS d ON CONFLICT DO NOTHING`, [
        new Date(first - DAY),
        new Date(today - DAY),
      ]);
      await pool.query(`INSERT INTO rollup_windows (kind, start) SELECT 'hourly', h FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 hour') AS h ON CONFLICT DO NOTHING`, [
        new Date(first),
        new Date(lastHour - HOUR),
      ]);
      await pool.query('VACUUM ANALYZE daily_user_sets, usage_user_numbers, usage_rollups_daily, usage_rollups_hourly');
    });
    redis.disconnect();
    phases.push({ name: 'roll up (recalculateRange)', resources: rolled.resources, metrics: {}, errors: [] });

    // Size of the sets.
    const { rows: size } = await pool.query<{ sets: string; set_bytes: string; numbers: string; number_bytes: string; user_days: string }>(
      `SELECT (SELECT count(*) FROM daily_user_sets WHERE license_id = $1)::text AS sets,
              pg_total_relation_size('daily_user_sets')::text AS set_bytes,
              (SELECT count(*) FROM usage_user_numbers WHERE tenant_id = $2)::text AS numbers,
              pg_total_relation_size('usage_user_numbers')::text AS number_bytes,
              (SELECT sum(bit_count(users)) FROM daily_user_sets WHERE license_id = $1)::text AS user_days`,
      [tenant.licenseId, tenant.tenantId],
    );
    const s = size[0]!;
    const userDays = Number(s.user_days);
    const setBytes = Number(s.set_bytes);
    const numberBytes = Number(s.number_bytes);

    // Statements side by side, alternating, over two ranges.
    const scope: SeriesScope = { tenantId: tenant.tenantId, licenses: [{ id: tenant.licenseId, timezone: 'UTC' }] };
    const ranges = [
      { name: '20 whole days', startDate: isoDate(first), endDate: isoDate(today - DAY) },
      { name: '20 days to today', startDate: isoDate(first + DAY), endDate: isoDate(today) },
    ];
    const errors: string[] = [];
    const statementFigures: Record<string, unknown> = {};
    const measuredStatements = await measurePhase(ctx.server, async () => {
      for (const r of ranges) {
        const before: number[] = [];
        const after: number[] = [];
        const planning: number[] = [];
        for (let i = 0; i < config.samples; i++) {
          const usageType = i % 5 === 0 ? undefined : TYPES[i % 4];
          const q = { ...scope, usageType };
          const span = rangeOf(r.startDate, r.endDate, 'daily', 'UTC');
          const buckets = bucketsOf(span, 'daily', 'UTC');
          const old = await timed(() => distinctUsersFromRawEvents(pool, q, span));
          // The plan (coverage facts) is read once per request for the sums anyway: timed apart.
          const plan = await timed(() => planGroups(pool, q, buckets, 'UTC', true));
          const fresh = await timed(() => distinctUsersOfPlans(pool, q, plan.value));
          planning.push(plan.ms);
          if (old.value !== fresh.value) errors.push(`${r.name} ${usageType ?? 'all types'}: raw count ${old.value}, user sets ${fresh.value}`);
          before.push(old.ms);
          after.push(fresh.ms);
        }
        statementFigures[r.name] = { beforeMs: before.map((t) => round(t, 2)), afterMs: after.map((t) => round(t, 2)), planMs: planning.map((t) => round(t, 2)) };
        figures.push({
          what: `uniqueUsers statement, ${r.name}, ${config.events.toLocaleString('en-US')} events: p95 after (user sets)`,
          value: round(percentile(after, 95), 2),
          unit: 'ms',
          digits: 2,
          target: { value: 50, better: 'lower' },
          baseline: `p50 ${round(percentile(after, 50), 2)} ms; before (count(DISTINCT) over raw events) p50 ${round(percentile(before, 50), 1)} ms, p95 ${round(percentile(before, 95), 1)} ms; the plan it reads (shared with the sums) p50 ${round(percentile(planning, 50), 2)} ms`,
        });
      }
    });
    phases.push({ name: 'uniqueUsers statements, before and after', resources: measuredStatements.resources, metrics: statementFigures, errors });

    // The whole request over HTTP: distinct inputs (range start, usage type, granularity), so the cache never answers.
    const latencies: number[] = [];
    const httpErrors: string[] = [];
    const request = await measurePhase(ctx.server, async () => {
      let i = 0;
      for (const granularity of ['daily', 'weekly', 'monthly']) {
        for (const usageType of [undefined, ...TYPES]) {
          for (let back = 0; back < 4; back++) {
            const input = { licenseId: tenant.licenseId, usageType, startDate: isoDate(first + back * DAY), endDate: isoDate(today - (i++ % 2) * DAY), granularity };
            const started = performance.now();
            const res = await get(`${ctx.server.baseUrl}/api/trpc/analytics.usage?input=${encodeURIComponent(JSON.stringify(input))}`, tenant.ownerKey, agent);
            latencies.push(performance.now() - started);
            if (res.status !== 200) httpErrors.push(`analytics.usage answered ${res.status}: ${res.body.slice(0, 200)}`);
          }
        }
      }
    });
    phases.push({ name: 'analytics.usage over HTTP', resources: request.resources, metrics: { requests: latencies.length }, errors: httpErrors });
    figures.push(
      {
        what: `analytics.usage (with uniqueUsers), one license, ~20 days, ${config.events.toLocaleString('en-US')} events, uncached: p95`,
        value: round(percentile(latencies, 95), 2),
        unit: 'ms',
        digits: 2,
        target: { value: 50, better: 'lower' },
        baseline: `p50 ${round(percentile(latencies, 50), 2)} ms over ${latencies.length} distinct requests, one at a time`,
      },
      {
        what: `user sets: ${Number(s.sets).toLocaleString('en-US')} day sets, ${userDays.toLocaleString('en-US')} user-days, ${Number(s.numbers).toLocaleString('en-US')} user numbers: set bytes per user-day`,
        value: round(setBytes / Math.max(1, userDays), 2),
        unit: 'B',
        digits: 2,
        baseline: `with the numbers ${round((setBytes + numberBytes) / Math.max(1, userDays), 2)} B; daily_user_sets ${round(setBytes / 1024, 1)} KiB, usage_user_numbers ${round(numberBytes / 1024, 1)} KiB (table + indexes + TOAST)`,
      },
    );
    return { name: 'unique-users', figures, phases, config: { ...config } };
  } finally {
    agent.destroy();
    await pool.end();
  }
}
