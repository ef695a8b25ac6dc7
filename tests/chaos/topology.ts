/**
 * The many-processes topology (issue 16, part 4): 2 API processes, 2 workers and 2 schedulers,
 * each started as `npm start` starts it, all at the same instant against one database that does
 * not exist yet and one Redis (a redis-server of the run's own, or the Redis Cluster named by
 * `redisClusterNodes`, passed to every process as REDIS_CLUSTER_NODES). Then:
 *  - quota: 2 × limit concurrent events for one license with a hard daily limit, alternating
 *    between the two API processes (each one's own counter view would admit the whole burst);
 *  - traffic: batch and single-event clients over both API processes (repeated idempotency
 *    keys, events in the last hours, so late into windows already rolled up); a client that
 *    cannot reach one API process sends the same body to the other, as a load balancer would;
 *  - chaos under the traffic: the worker running a recalculation is SIGKILLed mid-job and a
 *    new one started; one API process is SIGKILLed with requests in flight and started again;
 *  - afterwards, through the admin API: the hourly runs of the touched hours, then a
 *    recalculation whose worker is SIGKILLed mid-job too.
 * It measures and reports; the test decides what to assert.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { rollupDifferences } from '../helpers/rollup-check';
import { rng } from '../helpers/seeded-random';
import { freePort } from '../../bench/lib';
import { type Answer, request } from './http-client';
import { Child, RedisServer, sleep, startTally, waitFor, waitHealthy } from './processes';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export interface TopologyConfig {
  /** A database that does not exist yet: the processes create and migrate it. */
  databaseUrl: string;
  /** Every event sent by the traffic clients, repeats included. */
  events: number;
  quotaLimit?: number;
  batchSize?: number;
  batchClients?: number;
  singleClients?: number;
  licenses?: number;
  /** Hours before the current one the events fall in (rolled up at boot or before the traffic). */
  lateHours?: number;
  /** host:port,… of a Redis Cluster; without it the run starts a redis-server of its own. */
  redisClusterNodes?: string;
  log?: (line: string) => void;
}

export interface TopologyReport {
  redis: string;
  seconds: { startAll: number; total: number };
  startup: {
    /** Processes that logged `applied migrations` (one expected). */
    migrated: string[];
    /** Processes that logged that they waited for the migration lock. */
    waitedForLock: string[];
    /** Processes that failed to come up, with the tail of their output. */
    failed: string[];
    migrationRows: number;
    migrationNames: number;
  };
  /** Scheduled (not manual) jobs run more than once per window or attempted more than once. */
  scheduledRuns: { total: number; windowsRunTwice: string[]; hourlyWindowsDone: number; bootHourlyRuns: number };
  quota: { limit: number; attempts: number; accepted: number; refused: number; other: string[]; rows: number; afterBurst: number; perApi: [number, number] };
  traffic: {
    sent: number;
    unique: number;
    accepted: number;
    duplicate: number;
    rejected: number;
    serverErrors: number;
    unexpected: string[];
    failovers: number;
    connectionErrors: number;
    perApi: [number, number];
  };
  chaos: { log: string[]; workerKills: { jobId: string; killed: string; completedBy: string[]; status: string }[]; apiRestarts: number };
  storedKeys: number;
  rows: number;
  duplicateRows: number;
  missingRows: number;
  unexpectedRows: number;
  acceptedTwice: number;
  rollups: { hourlyDiffsAfterHourlyRuns: number; hourlyDiffs: number; dailyDiffs: number; sample: unknown[] };
}

type Role = 'api' | 'worker' | 'scheduler';

export async function runTopology(input: TopologyConfig): Promise<TopologyReport> {
  const config = {
    quotaLimit: input.quotaLimit ?? 100,
    batchSize: input.batchSize ?? 250,
    batchClients: input.batchClients ?? 4,
    singleClients: input.singleClients ?? 4,
    licenses: input.licenses ?? 6,
    lateHours: input.lateHours ?? 3,
  };
  const log = input.log ?? (() => undefined);
  const started = Date.now();
  const chaosLog: string[] = [];
  const note = (line: string) => {
    const stamped = `${((Date.now() - started) / 1000).toFixed(1)}s ${line}`;
    chaosLog.push(stamped);
    log(stamped);
  };

  const redis = input.redisClusterNodes ? undefined : await RedisServer.start();
  const agent = new http.Agent({ keepAlive: true, maxSockets: config.batchClients + config.singleClients + 8 });
  const ports = [await freePort(), await freePort()] as const;
  const baseUrls = ports.map((p) => `http://127.0.0.1:${p}`);
  const adminKey = `tk_test_${randomUUID().replace(/-/g, '').slice(0, 26)}`;
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    DATABASE_URL: input.databaseUrl,
    REDIS_KEY_PREFIX: `topology-${randomUUID().slice(0, 8)}:`,
    BOOTSTRAP_ADMIN_KEY: adminKey,
    // A killed worker's job is taken over once its lock has lapsed.
    JOB_LOCK_MS: '4000',
    QUOTA_REDIS_TIMEOUT_MS: '5000',
    ...(input.redisClusterNodes ? { REDIS_CLUSTER_NODES: input.redisClusterNodes } : { REDIS_URL: redis!.url }),
  };
  const all: Child[] = [];
  const current: Record<string, Child> = {};
  const start = (role: Role, name: string, extra: Record<string, string> = {}) => {
    const child = startTally(role, { ...env, DB_POOL_SIZE: role === 'api' ? '6' : '3', ...extra }, name);
    all.push(child);
    current[name.replace(/#\d+$/, '')] = child;
    return child;
  };
  const startApi = (i: 0 | 1, generation = 1) => start('api', `api${i + 1}#${generation}`, { PORT: String(ports[i]) });
  const up = async (child: Child, role: Role, i = 0) => {
    if (role === 'api') await waitHealthy(child, baseUrls[i]!, 180_000);
    else await child.waitForOutput(role === 'worker' ? 'workers started' : 'scheduler started', 180_000);
  };
  const pool = new pg.Pool({ connectionString: input.databaseUrl, max: 3 });

  const call = async (procedure: string, body: unknown, key = adminKey, api = 0): Promise<any> => {
    const answer = await request(agent, `${baseUrls[api]}/api/trpc/${procedure}`, { method: 'POST', key, body: JSON.stringify(body) });
    if (answer.status !== 200) throw new Error(`${procedure}: HTTP ${answer.status}: ${answer.body.slice(0, 500)}`);
    return (JSON.parse(answer.body) as { result: { data: unknown } }).result.data;
  };
  const jobRun = async (jobId: string) =>
    (await pool.query<{ status: string; attempts: number }>(`SELECT status, attempts FROM job_runs WHERE job_id = $1`, [jobId])).rows[0];
  const waitForJob = (jobId: string, timeoutMs = 180_000) =>
    waitFor(
      `job ${jobId} to complete`,
      async () => {
        const run = await jobRun(jobId);
        if (run?.status === 'failed') throw new Error(`job ${jobId} failed`);
        return run?.status === 'completed' ? run : undefined;
      },
      timeoutMs,
      250,
    );

  const workerKills: TopologyReport['chaos']['workerKills'] = [];
  let workerGeneration = 2;
  /** Starts `jobId`'s work, SIGKILLs the worker that took it, starts another worker. */
  const killWorkerRunning = async (jobId: string) => {
    const marker = `"jobId":"${jobId}"`;
    const runner = await waitFor(
      `a worker to start ${jobId}`,
      async () => all.find((c) => c.name.startsWith('worker') && c.alive && c.output().split('\n').some((l) => l.includes(marker) && l.includes('"msg":"job started"'))),
      60_000,
      20,
    );
    await runner.kill('SIGKILL');
    note(`SIGKILL ${runner.name} while it ran ${jobId}`);
    const next = start('worker', `worker${runner.name.slice(6, 7)}#${++workerGeneration}`);
    workerKills.push({ jobId, killed: runner.name, completedBy: [], status: 'pending' });
    await up(next, 'worker');
    note(`${next.name} started`);
  };

  try {
    // ------------------------------------------------------------ all six at the same instant
    const t = Date.now();
    const six: [Child, Role, number][] = [
      [startApi(0), 'api', 0],
      [startApi(1), 'api', 1],
      [start('worker', 'worker1#1'), 'worker', 0],
      [start('worker', 'worker2#1'), 'worker', 0],
      [start('scheduler', 'scheduler1#1'), 'scheduler', 0],
      [start('scheduler', 'scheduler2#1'), 'scheduler', 0],
    ];
    const failed: string[] = [];
    await Promise.all(six.map(([child, role, i]) => up(child, role, i).catch((e: unknown) => void failed.push(`${child.name}: ${String(e).slice(0, 3000)}`))));
    const startAll = (Date.now() - t) / 1000;
    note(`2 API processes, 2 workers and 2 schedulers started together: ${6 - failed.length} up in ${startAll.toFixed(1)} s`);
    const migrated = six.filter(([c]) => c.output().includes('"msg":"applied migrations"')).map(([c]) => c.name);
    const waitedForLock = six.filter(([c]) => c.output().includes('waiting for the migration lock')).map(([c]) => c.name);
    const migrations = failed.length
      ? { rows: 0, names: 0 }
      : (await pool.query<{ rows: number; names: number }>(`SELECT count(*)::int AS rows, count(DISTINCT migration_name)::int AS names FROM _prisma_migrations`)).rows[0]!;
    const startup = { migrated, waitedForLock, failed, migrationRows: migrations.rows, migrationNames: migrations.names };
    if (failed.length) throw new Error(`processes did not come up:\n${failed.join('\n')}`);

    // ------------------------------------------------------------ fixtures
    const tenant = await call('tenants.create', { name: 'Topology', slug: `topology-${randomUUID().slice(0, 8)}` });
    const owner = tenant.apiKey.key as string;
    const zones = ['UTC', 'America/New_York', 'Asia/Kolkata', 'Europe/Berlin'];
    const licenseIds: string[] = [];
    for (let i = 0; i < config.licenses; i++) {
      licenseIds.push((await call('licenses.create', { name: `topology ${i}`, plan: 'enterprise', timezone: zones[i % zones.length] }, owner)).id);
    }
    const quotaLicenseId = (await call('licenses.create', { name: 'topology quota', plan: 'enterprise', timezone: 'UTC' }, owner)).id as string;
    await call('thresholds.create', { licenseId: quotaLicenseId, usageType: 'api_call', periodType: 'daily', limitQuantity: config.quotaLimit, allowOverage: false }, owner);

    // ------------------------------------------------------------ quota across both API processes
    const quotaAnswers = await Promise.all(
      Array.from({ length: 2 * config.quotaLimit }, (_, i) =>
        request(agent, `${baseUrls[i % 2]}/api/trpc/usage.trackEvent`, {
          method: 'POST',
          key: owner,
          body: JSON.stringify({ licenseId: quotaLicenseId, usageType: 'api_call', quantity: 1, idempotencyKey: `quota-${i}` }),
        }),
      ),
    );
    const afterBurst = await request(agent, `${baseUrls[1]}/api/trpc/usage.trackEvent`, {
      method: 'POST',
      key: owner,
      body: JSON.stringify({ licenseId: quotaLicenseId, usageType: 'api_call', quantity: 1, idempotencyKey: 'quota-after' }),
    });
    const quotaRows = Number((await pool.query(`SELECT count(*) AS n FROM usage_events WHERE license_id = $1`, [quotaLicenseId])).rows[0].n);
    const quota = {
      limit: config.quotaLimit,
      attempts: quotaAnswers.length,
      accepted: quotaAnswers.filter((a) => a.status === 200).length,
      refused: quotaAnswers.filter((a) => a.status === 429).length,
      other: quotaAnswers.filter((a) => a.status !== 200 && a.status !== 429).map((a) => `${a.status} ${a.body.slice(0, 200)}`),
      rows: quotaRows,
      afterBurst: afterBurst.status,
      perApi: [0, 1].map((k) => quotaAnswers.filter((a, i) => i % 2 === k && a.status === 200).length) as [number, number],
    };
    note(`quota burst: ${quota.accepted} of ${quota.attempts} admitted against a limit of ${quota.limit} (${quota.perApi.join(' + ')} by the two API processes)`);

    // ------------------------------------------------------------ the windows the events go into
    const t0 = Date.now();
    const currentHour = Math.floor(t0 / HOUR_MS) * HOUR_MS;
    for (let k = 1; k <= config.lateHours; k++) {
      const window = `${new Date(currentHour - k * HOUR_MS).toISOString().slice(0, 13)}Z`;
      await waitForJob((await call('jobs.trigger', { name: 'usage.aggregate.hourly', window })).jobId);
    }
    note(`the ${config.lateHours} hours before this one are rolled up before the traffic`);

    // ------------------------------------------------------------ traffic
    const unique = Math.round(input.events * 0.9);
    const runTag = randomUUID().slice(0, 8);
    const eventOf = (u: number) => {
      const r = rng(0x70b0 ^ Math.imul(u + 1, 0x9e3779b1));
      const hoursBack = Math.floor(r() * (config.lateHours + 1)); // 0: this hour
      const at = hoursBack === 0 ? t0 - Math.floor(r() * Math.min(600_000, t0 - currentHour)) : currentHour - hoursBack * HOUR_MS + Math.floor(r() * HOUR_MS);
      return {
        licenseId: licenseIds[Math.floor(r() * licenseIds.length)],
        usageType: ['api_call', 'tokens', 'storage.gb'][Math.floor(r() * 3)],
        quantity: r() < 0.5 ? Math.floor(r() * 20) + 1 : (Math.floor(r() * 1_000_000) / 1000).toFixed(3),
        occurredAt: new Date(at).toISOString(),
        idempotencyKey: `topology-${runTag}-${u}`,
        userId: `user-${Math.floor(r() * 200)}`,
        statusCode: [200, 200, 200, 404, 500][Math.floor(r() * 5)],
        durationMs: Math.floor(r() * 500),
      };
    };
    // sends[s]: the unique event of send s; about one in ten repeats a recent one.
    const sends = new Int32Array(input.events);
    const single = new Uint8Array(input.events);
    {
      const r = rng(0x70b1);
      let next = 0;
      for (let s = 0; s < input.events; s++) {
        const uniqueLeft = unique - next;
        const repeat = next > 0 && (uniqueLeft === 0 || (input.events - s > uniqueLeft && r() < 0.1));
        sends[s] = repeat ? next - 1 - Math.floor(r() * Math.min(next, 1000)) : next++;
        single[s] = r() < 0.03 ? 1 : 0;
      }
    }
    const stored = new Uint8Array(unique);
    const acceptedCount = new Uint8Array(unique);
    const traffic = { sent: input.events, unique, accepted: 0, duplicate: 0, rejected: 0, serverErrors: 0, unexpected: [] as string[], failovers: 0, connectionErrors: 0, perApi: [0, 0] as [number, number] };
    const unexpected = (what: string) => {
      if (traffic.unexpected.length < 20) traffic.unexpected.push(what.slice(0, 400));
    };
    let answered = 0;
    let turn = 0;
    // Chaos happens at points of progress; clients wait at a gate a little past each point until
    // its action is done (a fast run cannot finish before its chaos, a slow one keeps sending meanwhile).
    let gate = 0.3;
    const atGate = async () => {
      while (answered >= gate * input.events) await sleep(20);
    };
    /** One call to the API process whose turn it is; on a connection error or 502/503, the same body to the other, until one answers. */
    const send = async (path: string, body: string): Promise<Answer> => {
      let api = turn++ % 2;
      const deadline = Date.now() + 120_000;
      for (let attempt = 0; ; attempt++) {
        try {
          const answer = await request(agent, `${baseUrls[api]}${path}`, { method: 'POST', key: owner, body, timeoutMs: 30_000 });
          if (answer.status !== 502 && answer.status !== 503) {
            traffic.perApi[api]! += 1;
            return answer;
          }
        } catch {
          traffic.connectionErrors += 1;
        }
        if (Date.now() > deadline) throw new Error(`no API process answered ${path} for 120 s`);
        traffic.failovers += 1;
        api = 1 - api;
        if (attempt > 0) await sleep(Math.min(500, 20 * attempt));
      }
    };
    const record = (u: number, status: 'accepted' | 'duplicate' | 'rejected') => {
      if (status === 'accepted') {
        traffic.accepted += 1;
        acceptedCount[u] = Math.min(255, acceptedCount[u]! + 1);
        stored[u] = 1;
      } else if (status === 'duplicate') {
        traffic.duplicate += 1;
        stored[u] = 1;
      } else traffic.rejected += 1;
    };
    const batchSends: number[] = [];
    const singleSends: number[] = [];
    for (let s = 0; s < input.events; s++) (single[s] ? singleSends : batchSends).push(s);
    let batchCursor = 0;
    let singleCursor = 0;
    const batchClient = async () => {
      while (batchCursor < batchSends.length) {
        await atGate();
        if (batchCursor >= batchSends.length) return;
        const slice = batchSends.slice(batchCursor, batchCursor + config.batchSize);
        batchCursor += slice.length;
        const answer = await send('/api/trpc/usage.trackEvents', JSON.stringify({ events: slice.map((s) => eventOf(sends[s]!)) }));
        answered += slice.length;
        if (answer.status !== 200) {
          if (answer.status >= 500) traffic.serverErrors += 1;
          unexpected(`trackEvents HTTP ${answer.status}: ${answer.body}`);
          continue;
        }
        const data = (JSON.parse(answer.body) as { result: { data: { results: { index: number; status: 'accepted' | 'duplicate' | 'rejected' }[] } } }).result.data;
        for (const r of data.results) record(sends[slice[r.index]!]!, r.status);
      }
    };
    const singleClient = async () => {
      while (singleCursor < singleSends.length) {
        await atGate();
        if (singleCursor >= singleSends.length) return;
        const u = sends[singleSends[singleCursor++]!]!;
        const answer = await send('/api/trpc/usage.trackEvent', JSON.stringify(eventOf(u)));
        answered += 1;
        if (answer.status === 200) record(u, (JSON.parse(answer.body) as { result: { data: { duplicate: boolean } } }).result.data.duplicate ? 'duplicate' : 'accepted');
        else if (answer.status >= 400 && answer.status < 500) {
          record(u, 'rejected');
          unexpected(`trackEvent HTTP ${answer.status}: ${answer.body}`);
        } else {
          traffic.serverErrors += 1;
          unexpected(`trackEvent HTTP ${answer.status}: ${answer.body}`);
        }
      }
    };
    const recalcRange = () => ({ startDate: new Date(t0 - 10 * DAY_MS).toISOString().slice(0, 10), endDate: new Date(t0).toISOString().slice(0, 10) });
    let apiRestarts = 0;
    const controller = async () => {
      while (answered < input.events * 0.25) await sleep(20);
      const { jobId } = await call('usage.recalculateAggregates', recalcRange(), adminKey, 1);
      await killWorkerRunning(jobId);
      gate = 0.55;
      while (answered < input.events * 0.5) await sleep(20);
      const api = current.api1!;
      await api.kill('SIGKILL');
      apiRestarts += 1;
      note(`SIGKILL ${api.name} with requests in flight (${answered} of ${input.events} answered)`);
      const next = startApi(0, 2);
      await up(next, 'api', 0);
      note(`${next.name} healthy`);
      gate = Number.POSITIVE_INFINITY;
    };
    note(`traffic: ${input.events} events (${unique} unique) from ${config.batchClients} batch and ${config.singleClients} single clients over both API processes`);
    const progress = setInterval(() => log(`  ${Math.round((100 * answered) / input.events)}% answered`), 10_000);
    try {
      await Promise.all([controller(), ...Array.from({ length: config.batchClients }, batchClient), ...Array.from({ length: config.singleClients }, singleClient)]);
    } finally {
      clearInterval(progress);
    }
    note(`traffic done: ${traffic.accepted} accepted, ${traffic.duplicate} duplicate, ${traffic.failovers} failovers`);

    // ------------------------------------------------------------ rollups
    await waitForJob(workerKills[0]!.jobId);
    const allLicenses = [...licenseIds, quotaLicenseId];
    const bounds = () => ({ hoursBefore: new Date(Math.floor(Date.now() / HOUR_MS) * HOUR_MS), daysEndedBefore: new Date() });
    const lastEnded = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS;
    for (let h = currentHour - config.lateHours * HOUR_MS; h <= lastEnded; h += HOUR_MS) {
      await waitForJob((await call('jobs.trigger', { name: 'usage.aggregate.hourly', window: `${new Date(h).toISOString().slice(0, 13)}Z` })).jobId);
    }
    const afterHourly = await rollupDifferences(pool, allLicenses, bounds());
    note(`after the hourly runs: ${afterHourly.hourly.length} hourly rollup rows differ from a recomputation`);
    // A recalculation whose worker dies in the middle: the other worker finishes it.
    const { jobId: finalRecalc } = await call('usage.recalculateAggregates', recalcRange());
    await killWorkerRunning(finalRecalc);
    await waitForJob(finalRecalc);
    const diffs = await rollupDifferences(pool, allLicenses, bounds());
    note(`after the recalculation: ${diffs.hourly.length} hourly and ${diffs.daily.length} daily rows differ`);
    for (const kill of workerKills) {
      kill.status = (await jobRun(kill.jobId))?.status ?? 'unknown';
      kill.completedBy = all.filter((c) => c.output().split('\n').some((l) => l.includes(`"jobId":"${kill.jobId}"`) && l.includes('job completed'))).map((c) => c.name);
    }

    // ------------------------------------------------------------ scheduled windows
    const scheduled = await pool.query<{ name: string; window: string | null; runs: number; attempts: number }>(
      `SELECT name, "window", count(*)::int AS runs, max(attempts)::int AS attempts FROM job_runs
        WHERE job_id NOT LIKE '%~%' AND name NOT LIKE 'usage.recalculate%' GROUP BY 1, 2`,
    );
    // The boot catch-up of a fresh install rolls up the hour before the start, once for both schedulers.
    const bootHour = new Date(Math.floor(t / HOUR_MS) * HOUR_MS - HOUR_MS).toISOString().slice(0, 13);
    const scheduledRuns = {
      total: scheduled.rows.length,
      windowsRunTwice: scheduled.rows.filter((r) => r.runs > 1 || r.attempts > 1).map((r) => `${r.name}@${r.window}: ${r.runs} runs, ${r.attempts} attempts`),
      hourlyWindowsDone: Number((await pool.query(`SELECT count(*) AS n FROM rollup_windows WHERE kind = 'hourly'`)).rows[0].n),
      bootHourlyRuns: scheduled.rows.filter((r) => r.name === 'usage.aggregate.hourly' && r.window?.startsWith(bootHour)).reduce((s, r) => s + r.runs, 0),
    };

    // ------------------------------------------------------------ what the database holds
    const rowsByKey = await pool.query<{ key: string; n: string }>(
      `SELECT idempotency_key AS key, count(*) AS n FROM usage_events WHERE tenant_id = $1 AND license_id <> $2 GROUP BY 1`,
      [tenant.tenant.id, quotaLicenseId],
    );
    let rows = 0;
    let duplicateRows = 0;
    let unexpectedRows = 0;
    const inTable = new Uint8Array(unique);
    const prefix = `topology-${runTag}-`;
    for (const r of rowsByKey.rows) {
      const n = Number(r.n);
      rows += n;
      if (n > 1) duplicateRows += 1;
      const u = r.key?.startsWith(prefix) ? Number(r.key.slice(prefix.length)) : Number.NaN;
      if (!Number.isInteger(u) || u < 0 || u >= unique || !stored[u]) unexpectedRows += 1;
      else inTable[u] = 1;
    }
    let storedKeys = 0;
    let missingRows = 0;
    let acceptedTwice = 0;
    for (let u = 0; u < unique; u++) {
      if (stored[u]) {
        storedKeys += 1;
        if (!inTable[u]) missingRows += 1;
      }
      if (acceptedCount[u]! > 1) acceptedTwice += 1;
    }

    return {
      redis: input.redisClusterNodes ? `cluster ${input.redisClusterNodes}` : `redis-server ${redis!.url}`,
      seconds: { startAll: Math.round(startAll * 10) / 10, total: Math.round((Date.now() - started) / 100) / 10 },
      startup,
      scheduledRuns,
      quota,
      traffic,
      chaos: { log: chaosLog, workerKills, apiRestarts },
      storedKeys,
      rows,
      duplicateRows,
      missingRows,
      unexpectedRows,
      acceptedTwice,
      rollups: {
        hourlyDiffsAfterHourlyRuns: afterHourly.hourly.length,
        hourlyDiffs: diffs.hourly.length,
        dailyDiffs: diffs.daily.length,
        sample: [...diffs.hourly.slice(0, 3), ...diffs.daily.slice(0, 3), ...afterHourly.hourly.slice(0, 3)],
      },
    };
  } catch (error) {
    const tails = all.map((p) => `--- ${p.name} (alive: ${p.alive}) ---\n${p.output().slice(-2500)}`).join('\n');
    throw new Error(`${(error as Error).message}\n${chaosLog.join('\n')}\n${tails}`, { cause: error });
  } finally {
    await Promise.all(all.map((child) => child.stop(10_000)));
    agent.destroy();
    await redis?.stop();
    await pool.end();
  }
}
