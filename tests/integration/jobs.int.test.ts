import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { QueueEvents, type Worker } from 'bullmq';
import pg from 'pg';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { rollupDifferences } from '../helpers/rollup-check';
import { Scheduler } from '../../jobs/scheduler';
import { jobDepsOf } from '../../src/app';
import { SCHEDULE, lastFiring } from '../../src/domain/jobs/schedule';
import { JobQueues, bullPrefix } from '../../jobs/queues';
import { closeWorkers, startWorkers } from '../../jobs/worker';
import { hourWindow } from '../../src/domain/jobs/catalog';
import { createRedis } from '../../src/lib/redis';
import { applyRetention } from '../../src/domain/retention/retention';
import { aggregateDailyWindow, aggregateHourlyWindow } from '../../src/domain/rollups/aggregate';
import { ensureUsageEventPartitions } from '../../src/domain/usage/partitions';
import { normalizeEvent } from '../../src/domain/usage/ingest';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const root = path.resolve(__dirname, '..', '..');

let db: ReturnType<typeof createIsolatedDatabase>;
let app: TestApp;
let queueEvents: Record<string, QueueEvents>;

beforeAll(async () => {
  db = createIsolatedDatabase('jobs');
  app = await TestApp.start({ DATABASE_URL: db.url });
  const prefix = bullPrefix(app.prefix);
  queueEvents = Object.fromEntries(
    Object.keys(app.services.queues.queues).map((q) => [q, new QueueEvents(q, { connection: createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null }), prefix })]),
  );
  await Promise.all(Object.values(queueEvents).map((q) => q.waitUntilReady()));
}, 180_000);
afterAll(async () => {
  await Promise.all(Object.values(queueEvents).map((q) => q.close()));
  await app.close();
  await db.drop();
});

const pool = () => app.services.db.pool;
const rollups = () => app.services.rollups;
const hourFloor = (t: number) => Math.floor(t / HOUR) * HOUR;

function inProcessWorkers(): Worker[] {
  const { services } = app;
  return startWorkers(
    jobDepsOf(services),
    { connection: services.bullConnection, prefix: bullPrefix(app.prefix), concurrency: 2, lockDuration: 5000 },
  );
}

async function waitFor(jobId: string) {
  const job = (await app.services.queues.getJob(jobId))!;
  return job.waitUntilFinished(queueEvents[job.queueName]!);
}

async function track(ownerKey: string, events: unknown[]) {
  const res = await app.call('usage.trackEvents', { events }, ownerKey);
  if (res.status !== 200 || res.data.rejected.length) throw new Error(JSON.stringify(res.body));
}

describe('scheduling', () => {
  it('enqueues one job per window when two schedulers fire at once', async () => {
    const second = createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
    await second.connect();
    const otherQueues = new JobQueues(second, bullPrefix(app.prefix));
    try {
      const a = new Scheduler(app.services.queues, pool(), app.services.logger, 35);
      const b = new Scheduler(otherQueues, pool(), app.services.logger, 35);
      const at = new Date(Date.UTC(2026, 10, 20, 7, 0, 0, 3));
      const ids = await Promise.all([a.fire('usage.aggregate.hourly', at), b.fire('usage.aggregate.hourly', at), a.fire('usage.aggregate.hourly', at)]);
      expect(new Set(ids)).toEqual(new Set(['usage.aggregate.hourly@2026-11-20T06Z']));
      const waiting = await app.services.queues.queues.maintenance.getJobs(['waiting', 'delayed', 'active', 'completed']);
      expect(waiting.filter((j) => j.id === 'usage.aggregate.hourly@2026-11-20T06Z')).toHaveLength(1);
      expect(waiting.filter((j) => j.name === 'usage.aggregate.hourly')).toHaveLength(1);
    } finally {
      await otherQueues.close();
      await second.quit();
    }
  });

  it('catches up the windows missed during a 3-hour gap, and only those', async () => {
    const now = new Date();
    const lastDone = hourFloor(now.getTime()) - 4 * HOUR;
    await pool().query(`INSERT INTO rollup_windows (kind, start) VALUES ('hourly', $1), ('daily', $2) ON CONFLICT DO NOTHING`, [
      new Date(lastDone),
      new Date(Math.floor((now.getTime() - 2 * HOUR) / DAY) * DAY - DAY),
    ]);
    const scheduler = new Scheduler(app.services.queues, pool(), app.services.logger, 35);
    const enqueued = await scheduler.catchUp(now);
    expect(enqueued).toEqual([1, 2, 3].map((i) => `usage.aggregate.hourly@${hourWindow(new Date(lastDone + i * HOUR))}`));

    const workers = inProcessWorkers();
    try {
      for (const id of enqueued) await waitFor(id);
    } finally {
      await closeWorkers(workers);
    }
    const { rows } = await pool().query(`SELECT start FROM rollup_windows WHERE kind = 'hourly' AND start > $1 ORDER BY start`, [new Date(lastDone)]);
    expect(rows.map((r) => r.start.getTime())).toEqual([1, 2, 3].map((i) => lastDone + i * HOUR));
    const runs = await app.prisma.jobRun.findMany({ where: { jobId: { in: enqueued } } });
    expect(runs.map((r) => r.status)).toEqual(['completed', 'completed', 'completed']);
    // a restart right after enqueues nothing: every window is done
    expect(await scheduler.catchUp(now)).toEqual([]);
  });

  it('runs at start the latest window of every other scheduled job that has not run, and only once', async () => {
    const now = new Date();
    const scheduler = new Scheduler(app.services.queues, pool(), app.services.logger, 35);
    const enqueued = await scheduler.catchUpLatest(now);
    const expected = SCHEDULE.filter((e) => !e.job.startsWith('usage.aggregate.')).map((e) => `${e.job}@${e.windowAt(lastFiring(e.cron, now))}`);
    expect(enqueued).toEqual(expected);
    expect(enqueued).toContain(`usage.forecast.daily@${new Date(now.getTime() - (now.getUTCHours() < 3 ? DAY : 0)).toISOString().slice(0, 10)}`);
    const workers = inProcessWorkers();
    try {
      for (const id of enqueued) await waitFor(id);
    } finally {
      await closeWorkers(workers);
    }
    expect(await scheduler.catchUpLatest(now)).toEqual([]);
  });
});

describe('usage.recalculateAggregates', () => {
  it('backfills a range through the queue, reports progress and ends exact', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey, { timezone: 'America/New_York' });
    const now = Date.now();
    const events = Array.from({ length: 120 }, (_, i) => ({
      licenseId,
      usageType: i % 2 ? 'api_call' : 'tokens',
      quantity: `${i}.5`,
      userId: `u${i % 7}`,
      occurredAt: new Date(now - (i + 2) * HOUR).toISOString(),
    }));
    await track(ownerKey, events);
    const startDate = new Date(now - 6 * DAY).toISOString().slice(0, 10);
    const endDate = new Date(now).toISOString().slice(0, 10);
    const res = await app.call('usage.recalculateAggregates', { licenseId, startDate, endDate }, app.adminKey, {
      headers: { 'x-tally-tenant': tenantId },
    });
    expect(res.status).toBe(200);
    const { jobId } = res.data;
    const waiting = await app.call('usage.jobStatus', { jobId }, app.adminKey, { method: 'GET' });
    expect(waiting.data.status).toBe('waiting');

    const workers = inProcessWorkers();
    try {
      await waitFor(jobId);
    } finally {
      await closeWorkers(workers);
    }
    const done = await app.call('usage.jobStatus', { jobId }, app.adminKey, { method: 'GET' });
    expect(done.data).toMatchObject({ status: 'completed', progress: { done: 7, total: 7 } });
    const diff = await rollupDifferences(pool(), [licenseId], {
      hoursBefore: new Date(hourFloor(now)),
      daysEndedBefore: new Date(Math.min(Date.parse(`${endDate}T00:00:00Z`), now)),
    });
    expect(diff).toEqual({ hourly: [], daily: [] });
    const run = await app.call('jobs.get', { id: jobId }, app.adminKey, { method: 'GET' });
    expect(run.data).toMatchObject({ name: 'usage.recalculate', status: 'completed', window: `${startDate}..${endDate}` });
    expect(run.data.rowsTouched).toBeGreaterThan(0);
  });

  it('stays exact while events keep arriving in the range: every difference is marked, and the next hourly run closes it', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey, { timezone: 'Asia/Kolkata' });
    const now = Date.now();
    const event = (i: number) => ({ licenseId, usageType: 'api_call', quantity: `${i % 9}.25`, userId: `u${i % 5}`, occurredAt: new Date(now - ((i * 53) % 90 + 2) * HOUR).toISOString() });
    await track(ownerKey, Array.from({ length: 300 }, (_, i) => event(i)));
    const startDate = new Date(now - 5 * DAY).toISOString().slice(0, 10);
    const endDate = new Date(now).toISOString().slice(0, 10);
    const { jobId } = (await app.call('usage.recalculateAggregates', { licenseId, startDate, endDate }, app.adminKey, { headers: { 'x-tally-tenant': tenantId } })).data;
    const workers = inProcessWorkers();
    let writing = true;
    const writer = (async () => {
      for (let b = 0; writing && b < 200; b++) await track(ownerKey, Array.from({ length: 20 }, (_, i) => event(1000 + b * 20 + i)));
    })();
    try {
      await waitFor(jobId);
    } finally {
      writing = false;
      await writer;
      await closeWorkers(workers);
    }
    const bounds = { hoursBefore: new Date(hourFloor(now)), daysEndedBefore: new Date(Math.floor(now / DAY) * DAY) };
    const diff = await rollupDifferences(pool(), [licenseId], bounds);
    const marked = new Set((await app.prisma.rollupDirtyHour.findMany({ where: { licenseId } })).map((m) => m.hour.getTime()));
    for (const row of diff.hourly as { hour: Date }[]) expect(marked.has(row.hour.getTime())).toBe(true);
    await aggregateHourlyWindow(rollups(), new Date(hourFloor(now) - HOUR), new Date(now));
    expect(await rollupDifferences(pool(), [licenseId], bounds)).toEqual({ hourly: [], daily: [] });
  });

  it('accepts 400 days and refuses 401, an inverted range, a future start and a foreign license', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    const other = await app.createTenant();
    const { id: foreign } = await app.createLicense(other.ownerKey);
    const headers = { 'x-tally-tenant': tenantId };
    const call = (input: unknown) => app.call('usage.recalculateAggregates', input, app.adminKey, { headers });
    expect((await call({ startDate: '2025-01-01', endDate: '2026-02-04' })).status).toBe(200); // 400 days
    const tooLong = await call({ startDate: '2025-01-01', endDate: '2026-02-05' }); // 401 days
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error?.message).toMatch(/endDate: .*400 days/);
    expect((await call({ startDate: '2026-02-05', endDate: '2026-02-04' })).status).toBe(400);
    expect((await call({ startDate: '2999-01-01', endDate: '2999-01-02' })).status).toBe(400);
    expect((await call({ startDate: '2026-02-30', endDate: '2026-03-01' })).status).toBe(400);
    expect((await call({ licenseId: foreign, startDate: '2026-01-01', endDate: '2026-01-02' })).status).toBe(404);
    expect((await app.call('usage.recalculateAggregates', { startDate: '2026-01-01', endDate: '2026-01-02' }, ownerKey)).status).toBe(403);
  });
});

describe('a worker killed in the middle of a job', () => {
  let worker: ChildProcess | undefined;
  afterEach(() => worker?.kill('SIGKILL'));

  const startWorkerProcess = () => {
    // as `npm start` runs it, with ROLE=worker
    const start = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
    const [, ...args] = start.trim().split(/\s+/);
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, ROLE: 'worker', DATABASE_URL: db.url, REDIS_KEY_PREFIX: app.prefix, LOG_LEVEL: 'warn', JOB_LOCK_MS: '2000' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    return child;
  };

  it('leaves exact rollups once the job is picked up again', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey, { timezone: 'Asia/Kolkata' });
    const now = Date.now();
    await track(
      ownerKey,
      Array.from({ length: 200 }, (_, i) => ({ licenseId, usageType: 'api_call', quantity: i + 1, occurredAt: new Date(now - (i * 37 + 90) * 60_000).toISOString() })),
    );
    // Hold the lock of one hour on day 3 so the job stops there, having committed days 1-2.
    const dayStart = Math.floor((now - 5 * DAY) / DAY) * DAY;
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    await blocker.query('SELECT pg_advisory_lock(7001, $1)', [(dayStart + 2 * DAY + 5 * HOUR) / HOUR]);
    const startDate = new Date(dayStart).toISOString().slice(0, 10);
    const endDate = new Date(now).toISOString().slice(0, 10);
    const { jobId } = (await app.call('usage.recalculateAggregates', { startDate, endDate }, app.adminKey)).data;

    worker = startWorkerProcess();
    const job = (await app.services.queues.getJob(jobId))!;
    for (;;) {
      const progress = (await app.services.queues.getJob(jobId))!.progress as { done?: number };
      if ((progress?.done ?? 0) >= 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    worker.kill('SIGKILL');
    await new Promise((r) => worker!.once('exit', r));
    await blocker.query('SELECT pg_advisory_unlock_all()');
    await blocker.end();
    // Events keep arriving while the job is down.
    await track(ownerKey, [{ licenseId, usageType: 'api_call', quantity: '0.5', occurredAt: new Date(now - 26 * HOUR).toISOString() }]);

    worker = startWorkerProcess();
    await job.waitUntilFinished(queueEvents.backfill!);
    const run = await app.prisma.jobRun.findUniqueOrThrow({ where: { jobId } });
    expect(run.status).toBe('completed');
    expect(run.attempts).toBeGreaterThanOrEqual(1);
    const diff = await rollupDifferences(pool(), [licenseId], {
      hoursBefore: new Date(hourFloor(now)),
      daysEndedBefore: new Date(Math.floor(now / DAY) * DAY),
    });
    expect(diff).toEqual({ hourly: [], daily: [] });
  }, 60_000);
});

describe('jobs.* and the queue dashboard', () => {
  it('triggers a catalog job, lists and gets its run; refuses a window that has not ended', async () => {
    const scrape = async () => (await fetch(`${app.baseUrl}/metrics`)).text();
    const value = (text: string, line: string) => Number(text.split('\n').find((l) => l.startsWith(`${line} `))?.split(' ')[1] ?? 0);
    const durations = 'tally_job_duration_seconds_count{job="usage.partitions.maintain",status="completed"}';
    const completed = 'tally_queue_jobs{queue="maintenance",state="completed"}';
    const before = await scrape();
    const trigger = await app.call('jobs.trigger', { name: 'usage.partitions.maintain' }, app.adminKey);
    expect(trigger.status).toBe(200);
    const workers = inProcessWorkers();
    try {
      await waitFor(trigger.data.jobId);
    } finally {
      await closeWorkers(workers);
    }
    const list = await app.call('jobs.list', { name: 'usage.partitions.maintain' }, app.adminKey, { method: 'GET' });
    expect(list.data.items[0]).toMatchObject({ jobId: trigger.data.jobId, status: 'completed' });
    const nextHour = hourWindow(new Date(hourFloor(Date.now()) + HOUR));
    const early = await app.call('jobs.trigger', { name: 'usage.aggregate.hourly', window: nextHour }, app.adminKey);
    expect(early.status).toBe(400);
    const bad = await app.call('jobs.trigger', { name: 'usage.aggregate.hourly', window: '2026-11-23T10:00' }, app.adminKey);
    expect(bad.status).toBe(400);
    const unknown = await app.call('jobs.trigger', { name: 'no.such.job' }, app.adminKey);
    expect(unknown.status).toBe(400);
    const after = await scrape();
    // this run, not whatever earlier tests of the file left in the counters
    expect(value(after, durations) - value(before, durations)).toBe(1);
    expect(value(after, completed) - value(before, completed)).toBe(1);
  });

  it('serves /admin/queues to admins only (Bearer or Basic)', async () => {
    const { ownerKey } = await app.createTenant();
    expect((await fetch(`${app.baseUrl}/admin/queues`)).status).toBe(401);
    expect((await fetch(`${app.baseUrl}/admin/queues`, { headers: { authorization: `Bearer ${ownerKey}` } })).status).toBe(403);
    const basic = Buffer.from(`admin:${app.adminKey}`).toString('base64');
    const page = await fetch(`${app.baseUrl}/admin/queues`, { headers: { authorization: `Basic ${basic}` } });
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
    const api = await fetch(`${app.baseUrl}/admin/queues/api/queues`, { headers: { authorization: `Bearer ${app.adminKey}` } });
    expect(api.status).toBe(200);
    expect(JSON.stringify(await api.json())).toContain('maintenance');
  });
});

describe('retention', () => {
  async function writeOld(licenseId: string, tenantId: string, instants: number[]) {
    await ensureUsageEventPartitions(pool(), new Date(), new Date(Math.min(...instants)));
    const events = instants.map((t) => {
      const e = normalizeEvent(tenantId, 'live', { licenseId, usageType: 'api_call', quantity: '1', occurredAt: new Date(t).toISOString() } as never, { maxAgeMs: Number.MAX_SAFE_INTEGER, maxFutureMs: DAY }, new Date());
      if ('status' in e) throw new Error(e.message);
      return e;
    });
    const outcomes = await app.services.eventWriter.write(events);
    expect(outcomes.map((o) => o.status)).toEqual(events.map(() => 'accepted'));
  }

  it('drops old partitions and rows, but never events whose windows are not final', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const now = new Date();
    const cutoff = Math.floor((now.getTime() - 90 * DAY) / DAY) * DAY;
    const monthOf = (t: number) => `usage_events_${new Date(t).toISOString().slice(0, 7).replace('-', '_')}`;
    // one event in a month wholly past the cutoff, two just before it, one after it
    const first = new Date(cutoff);
    const old = [
      Date.UTC(first.getUTCFullYear(), first.getUTCMonth() - 2, 10, 5),
      cutoff - 3 * DAY + 5 * HOUR,
      cutoff - 2 * DAY + 5 * HOUR,
      cutoff + 5 * DAY + 5 * HOUR,
    ];
    await writeOld(licenseId, tenantId, old);
    const late = new Date(now);
    // Roll up everything except the hour of the third event.
    for (const t of old.filter((t) => t !== old[2])) await aggregateHourlyWindow(rollups(), new Date(t), late);
    for (let d = Math.floor(old[0]! / DAY) * DAY - DAY; d <= old[3]! + DAY; d += DAY) await aggregateDailyWindow(pool(), new Date(d), late);
    const policy = { usageEventDays: 90, idempotencyKeyDays: 40, auditLogDays: 365, jobRunDays: 90 };

    const held = await applyRetention(pool(), policy, now);
    expect(held.heldBackBy).toBe(new Date(old[2]!).toISOString().slice(0, 13) + ':00:00.000Z');
    expect(held.droppedPartitions).toContain(monthOf(old[0]!));
    expect(held.droppedPartitions).not.toContain(monthOf(old[2]!));
    const left = async () => (await pool().query<{ t: Date }>('SELECT occurred_at AS t FROM usage_events WHERE license_id = $1 ORDER BY 1', [licenseId])).rows.map((r) => r.t.getTime());
    expect(await left()).toEqual([old[2], old[3]]);

    await aggregateHourlyWindow(rollups(), new Date(old[2]!), late);
    const done = await applyRetention(pool(), policy, now);
    expect(done.heldBackBy).toBeNull();
    expect(await left()).toEqual([old[3]]);
    // the rollups stay: they are the record now
    const hourly = await app.prisma.usageRollupHourly.count({ where: { licenseId } });
    expect(hourly).toBe(4);
  });

  describe('dropping a partition while queries hold usage_events', () => {
    const policy = { usageEventDays: 90, idempotencyKeyDays: 40, auditLogDays: 365, jobRunDays: 90 };
    const monthsAgo = (n: number) => {
      const now = new Date();
      return Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - n, 12, 7);
    };
    const partitionOf = (t: number) => `usage_events_${new Date(t).toISOString().slice(0, 7).replace('-', '_')}`;
    const exists = async (table: string) => (await pool().query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table])).rows[0]!.t !== null;

    async function finalOldEvent(monthsBack: number) {
      const { ownerKey, tenantId } = await app.createTenant();
      const { id: licenseId } = await app.createLicense(ownerKey);
      const at = monthsAgo(monthsBack);
      await writeOld(licenseId, tenantId, [at]);
      const late = new Date();
      await aggregateHourlyWindow(rollups(), new Date(at), late);
      for (let d = Math.floor(at / DAY) * DAY - DAY; d <= at + DAY; d += DAY) await aggregateDailyWindow(pool(), new Date(d), late);
      return at;
    }

    /** Whether a session of the test database running a statement that matches `statement` waits for a lock. */
    async function waitsForLock(statement: RegExp): Promise<boolean> {
      const { rows } = await pool().query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ~ $1`,
        [statement.source],
      );
      return rows[0]!.n > 0;
    }
    // what retention runs on a partition: the detach (a plain DROP TABLE before it)
    const PARTITION_DDL = /DETACH PARTITION|DROP TABLE/;

    async function until(check: () => Promise<boolean>, what: string) {
      const deadline = Date.now() + 10_000;
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    }

    it('lets events in and queries run while it waits for a long query to finish with an old partition', async () => {
      const at = await finalOldEvent(7);
      const { ownerKey } = await app.createTenant();
      const { id: licenseId } = await app.createLicense(ownerKey);
      const reader = new pg.Client({ connectionString: db.url });
      await reader.connect();
      try {
        // A long analytics query or export: its transaction holds every partition, the old one too.
        await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        await reader.query('SELECT count(*) FROM usage_events');
        const retention = applyRetention(pool(), policy, new Date());
        await until(() => waitsForLock(PARTITION_DDL), 'retention to wait for the long query');
        // A plain DROP TABLE queued an ACCESS EXCLUSIVE lock on usage_events here, and every insert
        // and read after it waited behind that queue for as long as the long query ran.
        const stalled = new Promise<'stalled'>((r) => setTimeout(() => r('stalled'), 5_000).unref());
        const writeAndRead = (async () => {
          await track(ownerKey, [{ licenseId, usageType: 'api_call', quantity: '2' }]);
          const { rows } = await pool().query<{ q: string }>('SELECT trim_scale(sum(quantity))::text AS q FROM usage_events WHERE license_id = $1', [licenseId]);
          return rows[0]!.q;
        })();
        expect(await Promise.race([writeAndRead, stalled])).toBe('2');
        expect(await waitsForLock(PARTITION_DDL)).toBe(true); // still waiting: the old partition is not gone yet
        await reader.query('COMMIT');
        const outcome = await retention;
        expect(outcome.droppedPartitions).toContain(partitionOf(at));
        expect(await exists(partitionOf(at))).toBe(false);
      } finally {
        await reader.end();
      }
    });

    it('finishes a detach an earlier run left pending, and drops a table one left detached', async () => {
      const pendingAt = await finalOldEvent(8);
      const detachedAt = await finalOldEvent(9);
      // A run stopped between DETACH and DROP leaves a plain table with the month's name.
      await pool().query(`ALTER TABLE usage_events DETACH PARTITION ${partitionOf(detachedAt)}`);
      // A run cancelled in the second half of DETACH ... CONCURRENTLY leaves the partition pending.
      const reader = new pg.Client({ connectionString: db.url });
      const detacher = new pg.Client({ connectionString: db.url });
      await Promise.all([reader.connect(), detacher.connect()]);
      try {
        await reader.query('BEGIN');
        await reader.query('SELECT count(*) FROM usage_events');
        const detacherPid = (await detacher.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        const detach = detacher.query(`ALTER TABLE usage_events DETACH PARTITION ${partitionOf(pendingAt)} CONCURRENTLY`).then(
          () => null,
          (e: Error) => e,
        );
        await until(() => waitsForLock(/DETACH PARTITION .* CONCURRENTLY/), 'the detach to wait for the reader');
        await pool().query('SELECT pg_cancel_backend($1)', [detacherPid]);
        expect(String(await detach)).toMatch(/cancel/i);
        await reader.query('COMMIT');
      } finally {
        await Promise.all([reader.end(), detacher.end()]);
      }
      const pending = await pool().query<{ pending: boolean }>(
        'SELECT inhdetachpending AS pending FROM pg_inherits WHERE inhrelid = $1::regclass',
        [partitionOf(pendingAt)],
      );
      expect(pending.rows).toEqual([{ pending: true }]);

      const outcome = await applyRetention(pool(), policy, new Date());
      expect(outcome.droppedPartitions).toEqual(expect.arrayContaining([partitionOf(pendingAt), partitionOf(detachedAt)]));
      expect(await exists(partitionOf(pendingAt))).toBe(false);
      expect(await exists(partitionOf(detachedAt))).toBe(false);
    });
  });
});
