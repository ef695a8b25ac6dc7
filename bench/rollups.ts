/**
 * Rollup benchmark (DESIGN §7): a full recompute of N events (default 10M: 1,000 licenses,
 * 4 usage types, 30 days) into hourly and daily rollups by a worker process (ROLE=worker,
 * as `npm start` runs it) through the `usage.recalculate` job, beside a plain SQL GROUP BY of
 * the same data in the same run; then one hourly run over an hour holding 100,000 events.
 *
 * Sizes: BENCH_ROLLUP_EVENTS (10,000,000), BENCH_ROLLUP_LICENSES (1,000), BENCH_ROLLUP_DAYS
 * (30), BENCH_ROLLUP_HOUR_EVENTS (100,000).
 */
import { spawn } from 'node:child_process';
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { JobQueues, bullPrefix } from '../jobs/queues';
import { hourWindow } from '../src/domain/jobs/catalog';
import {
  type BenchContext,
  type BenchReport,
  type Figure,
  type PhaseReport,
  CpuMeter,
  ROOT,
  RssSampler,
  intFromEnv,
  randomAlphanumeric,
  round,
  startCommand,
} from './lib';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const ZONES = ['UTC', 'UTC', 'UTC', 'UTC', 'UTC', 'UTC', 'America/New_York', 'Europe/Berlin', 'Asia/Kolkata', 'Australia/Sydney'];

interface Config {
  events: number;
  licenses: number;
  days: number;
  hourEvents: number;
}

export function rollupConfigFromEnv(): Config {
  return {
    events: intFromEnv('BENCH_ROLLUP_EVENTS', 10_000_000),
    licenses: intFromEnv('BENCH_ROLLUP_LICENSES', 1_000),
    days: intFromEnv('BENCH_ROLLUP_DAYS', 30),
    hourEvents: intFromEnv('BENCH_ROLLUP_HOUR_EVENTS', 100_000),
  };
}

async function timed<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const started = performance.now();
  const result = await work();
  return { result, seconds: (performance.now() - started) / 1000 };
}

/**
 * Events straight into the partitioned table, by four sessions at once (data set-up, not the thing
 * measured). Like real traffic they arrive roughly in time order (within a minute), spread
 * over every license and usage type.
 */
export async function generateEvents(
  pool: pg.Pool,
  tenantId: string,
  licenseIds: string[],
  count: number,
  from: number,
  spanMs: number,
): Promise<void> {
  // Four sessions write each chunk side by side, one taking every fourth event, so pages
  // written at the same moment hold the same minutes, as the pages of real ingestion do.
  // (Four slices of a quarter of the span each would mix four weeks in every page range
  // and make every window's BRIN scan read four times the rows it needs.)
  const sessions = 4;
  const chunk = 500_000;
  for (let at = 0; at < count; at += chunk) {
    const last = Math.min(count, at + chunk) - 1;
    await Promise.all(
      Array.from({ length: sessions }, (_, s) =>
        pool.query(
          `INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, payload_hash,
                                     user_id, status_code, duration_ms)
           SELECT gen_random_uuid(), $1, ($2::uuid[])[1 + (i % $3)],
                  (ARRAY['api_call','tokens','storage.gb','seats'])[1 + (i / $3) % 4],
                  ((i * 7919) % 10000) / 100.0,
                  to_timestamp(($4 + least($5::bigint - 1, i::bigint * $5::bigint / $8::bigint + (i * 7919) % 60000)) / 1000.0),
                  'bench', 'u' || (i % 97), CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END, i % 900
             FROM generate_series($6::bigint, $7::bigint, $9) AS i`,
          [tenantId, licenseIds, licenseIds.length, from, spanMs, at + s, last, count, sessions],
        ),
      ),
    );
  }
}

function startWorker(ctx: BenchContext, prefix: string) {
  const start = startCommand();
  const child = spawn(process.execPath, [...start.nodeArgs, start.entry], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production', ROLE: 'worker', DATABASE_URL: ctx.databaseUrl, REDIS_KEY_PREFIX: prefix, LOG_LEVEL: 'warn', WORKER_CONCURRENCY: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-5000)));
  return { child, stderr: () => err };
}

export async function runRollupBench(ctx: BenchContext, config: Config): Promise<BenchReport> {
  const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 6 });
  const prefix = `bench:rollups:${randomAlphanumeric(8)}:`;
  const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  const queues = new JobQueues(connection, bullPrefix(prefix));
  const events = new QueueEvents('backfill', { connection: connection.duplicate(), prefix: bullPrefix(prefix) });
  const maintenanceEvents = new QueueEvents('maintenance', { connection: connection.duplicate(), prefix: bullPrefix(prefix) });
  const worker = startWorker(ctx, prefix);
  const phases: PhaseReport[] = [];
  const errors: string[] = [];
  try {
    const now = Date.now();
    const currentHour = Math.floor(now / HOUR) * HOUR;
    const spanEnd = currentHour - 2 * HOUR;
    const spanStart = spanEnd - config.days * DAY;

    // Set-up: a tenant, licenses across time zones, the events.
    const tenantId = (
      await pool.query<{ id: string }>(
        `INSERT INTO tenants (id, name, slug, updated_at) VALUES (gen_random_uuid(), 'Rollup bench', $1, now()) RETURNING id`,
        [`rollups-${ctx.runId}`],
      )
    ).rows[0]!.id;
    const licenseIds = (
      await pool.query<{ id: string }>(
        `INSERT INTO licenses (id, tenant_id, name, plan_id, timezone, billing_anchor, updated_at)
         SELECT gen_random_uuid(), $1, 'bench ' || i, (SELECT id FROM plans WHERE code = 'enterprise'), ($2::text[])[1 + i % $3], now(), now()
           FROM generate_series(0, $4 - 1) AS i RETURNING id`,
        [tenantId, ZONES, ZONES.length, config.licenses],
      )
    ).rows.map((r) => r.id);
    await pool.query('SELECT tally_ensure_usage_event_partitions($1::date, 4)', [new Date(spanStart - 31 * DAY).toISOString().slice(0, 10)]);
    console.log(`  generating ${config.events.toLocaleString('en-US')} events over ${config.days} days…`);
    const setup = await timed(() => generateEvents(pool, tenantId, licenseIds, config.events, spanStart, spanEnd - spanStart));
    // What autovacuum would have done to a month of data: statistics and BRIN summaries.
    await pool.query('VACUUM ANALYZE usage_events');
    console.log(`  generated in ${round(setup.seconds)} s`);

    // Baselines, same data, same run: the plain GROUP BYs (hourly, and license-local daily)
    // read only, and the same GROUP BYs written into tables (CREATE TABLE AS), which is the
    // least any rollup has to do: read, group and write the rows.
    const HOURLY_GROUP_BY = `SELECT tenant_id, license_id, usage_type, date_trunc('hour', occurred_at) AS hour, sum(quantity) AS quantity,
        count(*) AS event_count, max(quantity) AS max_quantity, count(DISTINCT user_id) AS distinct_users,
        count(*) FILTER (WHERE status_code >= 400) AS error_count, sum(duration_ms) AS duration_ms_sum
      FROM usage_events GROUP BY 1, 2, 3, 4`;
    const DAILY_GROUP_BY = `SELECT e.tenant_id, e.license_id, e.usage_type, (e.occurred_at AT TIME ZONE l.timezone)::date AS date,
        sum(e.quantity) AS quantity, count(*) AS event_count, max(e.quantity) AS max_quantity, count(DISTINCT e.user_id) AS distinct_users,
        count(*) FILTER (WHERE e.status_code >= 400) AS error_count, sum(e.duration_ms) AS duration_ms_sum
      FROM usage_events e JOIN licenses l ON l.id = e.license_id GROUP BY 1, 2, 3, 4`;
    // Every output column is read: PostgreSQL drops aggregates nobody reads from a subquery,
    // so a bare count(*) over the GROUP BY would not compute them.
    const READ_ALL = `count(*), sum(quantity), sum(event_count), max(max_quantity), sum(distinct_users), sum(error_count), sum(duration_ms_sum)`;
    const readOnly = await timed(async () => {
      await pool.query(`SELECT ${READ_ALL} FROM (${HOURLY_GROUP_BY}) g`);
      await pool.query(`SELECT ${READ_ALL} FROM (${DAILY_GROUP_BY}) g`);
    });
    const baseline = await timed(async () => {
      await pool.query(`CREATE TABLE bench_plain_hourly AS ${HOURLY_GROUP_BY}`);
      await pool.query(`CREATE TABLE bench_plain_daily AS ${DAILY_GROUP_BY}`);
    });
    await pool.query('DROP TABLE bench_plain_hourly, bench_plain_daily');
    console.log(`  plain GROUP BY: ${round(readOnly.seconds, 2)} s read-only, ${round(baseline.seconds, 2)} s written to tables`);

    // The full recompute, by the worker process through the queue.
    const workerPid = worker.child.pid!;
    const rss = new RssSampler(workerPid, workerPid, 100);
    const cpu = new CpuMeter(workerPid);
    await rss.start();
    await cpu.start();
    const full = await timed(async () => {
      const job = await queues.enqueue(
        'usage.recalculate',
        {
          tenantId: null,
          licenseId: null,
          // one day more on each side: local days of the first and last UTC dates reach into them
          startDate: new Date(spanStart - DAY).toISOString().slice(0, 10),
          endDate: new Date(spanEnd + DAY).toISOString().slice(0, 10),
        },
        { rerunTag: ctx.runId },
      );
      await job.waitUntilFinished(events, 30 * 60_000);
      return job.id!;
    });
    const fullResources = await cpu.stop();
    const fullRss = await rss.stop();
    const fullRun = (await pool.query<{ duration_ms: number; rows_touched: string }>('SELECT duration_ms, rows_touched FROM job_runs WHERE job_id = $1', [full.result])).rows[0];
    console.log(`  full recompute: ${round(full.seconds, 2)} s`);

    // Exactness check of the benchmark's own output.
    // This tenant's events only: other benchmarks share the database, and their events of the
    // current hour cannot be rolled up before the hour ends.
    const check = await pool.query<{ raw: string; hourly: string; daily: string }>(
      `SELECT (SELECT sum(quantity) FROM usage_events WHERE tenant_id = $1)::text AS raw,
              (SELECT sum(quantity) FROM usage_rollups_hourly WHERE tenant_id = $1)::text AS hourly,
              (SELECT sum(quantity) FROM usage_rollups_daily WHERE tenant_id = $1)::text AS daily`,
      [tenantId],
    );
    const sums = check.rows[0]!;
    if (sums.raw !== sums.hourly || sums.raw !== sums.daily) {
      const perDay = await pool.query<{ d: string; raw: string | null; hourly: string | null }>(
        `SELECT to_char(d, 'YYYY-MM-DD') AS d, raw::text, hourly::text
           FROM (SELECT date_trunc('day', occurred_at) AS d, sum(quantity) AS raw FROM usage_events WHERE tenant_id = $1 GROUP BY 1) a
           FULL JOIN (SELECT date_trunc('day', hour) AS d, sum(quantity) AS hourly FROM usage_rollups_hourly WHERE tenant_id = $1 GROUP BY 1) b
             USING (d)
          WHERE raw IS DISTINCT FROM hourly ORDER BY 1`,
        [tenantId],
      );
      errors.push(`rollup totals differ from raw: ${JSON.stringify(sums)}; days whose hourly rows differ: ${JSON.stringify(perDay.rows)}`);
    }

    // One hourly run over an hour holding hourEvents events.
    const hour = currentHour - HOUR;
    await generateEvents(pool, tenantId, licenseIds, config.hourEvents, hour, HOUR);
    await pool.query('ANALYZE usage_events');
    const hourly = await timed(async () => {
      const job = await queues.enqueue('usage.aggregate.hourly', { window: hourWindow(new Date(hour)) }, { rerunTag: ctx.runId });
      await job.waitUntilFinished(maintenanceEvents, 5 * 60_000);
      return job.id!;
    });
    const hourlyRun = (await pool.query<{ duration_ms: number }>('SELECT duration_ms FROM job_runs WHERE job_id = $1', [hourly.result])).rows[0];
    console.log(`  hourly run: ${hourlyRun?.duration_ms} ms`);

    phases.push({
      name: 'full recompute',
      resources: {
        ...fullResources,
        wallSeconds: round(full.seconds, 2),
        window: { fromUs: 0, toUs: 0 },
        peakRssMb: fullRss.peakRssMb,
        peakTreeRssMb: fullRss.peakTreeRssMb,
        rssSamples: fullRss.samples,
        rssTimeline: fullRss.timeline,
      },
      metrics: {
        jobDurationMs: fullRun?.duration_ms,
        rowsTouched: Number(fullRun?.rows_touched ?? 0),
        baselineSeconds: round(baseline.seconds, 2),
        readOnlyGroupBySeconds: round(readOnly.seconds, 2),
      },
      errors,
    });

    const figures: Figure[] = [
      {
        what: `full recompute of ${config.events.toLocaleString('en-US')} events (hourly + daily, by the worker)`,
        value: round(full.seconds, 2),
        unit: 's',
        digits: 2,
        target: { value: 15, better: 'lower' },
        baseline: `plain SQL GROUP BY of the same data into tables: ${round(baseline.seconds, 2)} s (read-only: ${round(readOnly.seconds, 2)} s)`,
      },
      {
        what: 'full recompute / plain GROUP BY into tables',
        value: round(full.seconds / baseline.seconds, 2),
        unit: '×',
        digits: 2,
        target: { value: 1.5, better: 'lower' },
      },
      {
        what: `hourly run over one hour of ${config.hourEvents.toLocaleString('en-US')} events`,
        value: (hourlyRun?.duration_ms ?? NaN) / 1000,
        unit: 's',
        digits: 3,
        target: { value: 1, better: 'lower' },
        baseline: `wall time including the queue: ${round(hourly.seconds, 3)} s`,
      },
      { what: 'worker peak RSS during the full recompute', value: fullRss.peakRssMb, unit: 'MB' },
    ];
    return { name: 'rollups', figures, phases, config: { ...config } };
  } finally {
    worker.child.kill('SIGTERM');
    await new Promise((r) => worker.child.once('exit', r));
    await events.close();
    await maintenanceEvents.close();
    await queues.close();
    const keys = await connection.keys(`${prefix}*`);
    if (keys.length) await connection.del(...keys);
    connection.disconnect();
    await pool.end();
  }
}
