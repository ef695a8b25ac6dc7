/**
 * The chaos scenario shared by the CI test (tests/chaos/chaos.int.test.ts, 200,000 events) and
 * `npm run chaos` (bench/chaos.ts, 1,000,000 events): Tally as three child processes
 * (ROLE=api, worker, scheduler, each started as `npm start` starts it) on a database and a
 * redis-server of the run's own; concurrent clients send events over HTTP (batches and single
 * calls; 10% repeated idempotency keys with the same payload, 5% late, 1% invalid) while the
 * worker is SIGKILLed three times, the API is SIGKILLed and started again once, and Redis is
 * flushed twice. Clients retry connection errors with the same keys, as an SDK would.
 *
 * Afterwards it restores what the scheduler would (hourly runs of the hours touched, the
 * threshold check) and a recalculation, and measures what the run must hold: rows = events
 * answered as stored, no key stored twice or answered `accepted` twice, rollups equal a
 * from-scratch GROUP BY, the hard quota never passed, and every alert's webhook delivered once.
 * It measures and reports; the test and the script decide what to assert or print.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { rollupDifferences } from '../helpers/rollup-check';
import { startReceiver } from '../helpers/receiver';
import { type Answer, request, requestWithRetry } from './http-client';
import { freePort } from '../../bench/lib';
import { Child, RedisServer, sleep, startTally, waitFor, waitHealthy } from './processes';
import { rng } from '../helpers/seeded-random';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export interface ChaosConfig {
  /** Every event sent, repeats and invalid ones included. */
  events: number;
  databaseUrl: string;
  duplicateShare?: number;
  lateShare?: number;
  invalidShare?: number;
  /** Share of sends that go one by one through usage.trackEvent. */
  singleShare?: number;
  batchSize?: number;
  batchClients?: number;
  singleClients?: number;
  licenses?: number;
  /** Hours before the current one that are rolled up before the traffic, and that late events go to. */
  lateHours?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  config: Required<Omit<ChaosConfig, 'log' | 'databaseUrl'>>;
  startedAt: string;
  seconds: { total: number; setup: number; traffic: number; restore: number };
  sent: { total: number; unique: number; repeats: number; late: number; invalid: number; quotaLicense: number; single: number; batches: number };
  answers: { accepted: number; duplicate: number; rejected: Record<string, number>; serverErrors: number; unexpected: string[] };
  client: { retries: number; connectionErrors: number; unavailable: number };
  chaos: { workerKills: number; apiRestarts: number; redisFlushes: number; keysFlushed: number[]; log: string[] };
  /** Keys answered accepted or duplicate at least once. */
  storedKeys: number;
  rows: number;
  /** Keys answered `accepted` more than once (each would be an event stored twice). */
  acceptedTwice: number;
  /** Keys stored more than once in usage_events. */
  duplicateRows: number;
  /** Keys stored but never answered as stored, or answered as stored but not in the table. */
  missingRows: number;
  unexpectedRows: number;
  /** A retry of a stored event (sent after its stored answer) answered 429 instead of duplicate. */
  storedAnsweredQuota: number;
  rollups: {
    /** Differences left once the hourly runs of the touched hours have run (late marks folded in). */
    hourlyDiffsAfterHourlyRuns: number;
    hourlyDiffs: number;
    dailyDiffs: number;
    sample: unknown[];
    jobs: { id: string; name: string; status: string }[];
  };
  quota: { limit: number; periods: { period: string; admitted: number; overAdmitted: number }[]; attempts: number; refused: number; maxOverAdmitted: number };
  webhooks: {
    expectedEvents: number;
    receivedEvents: number;
    posts: number;
    /** Posts the receiver answered with an error (on purpose: its first answers). */
    refusedPosts: number;
    missing: string[];
    unexpected: string[];
    /** Event ids that came under more than one delivery id (a second delivery of one event). */
    multipleDeliveries: string[];
    /** Posts of an event id seen before (the same delivery retried: receivers dedupe by id). */
    repeatedPosts: number;
    pendingAfterWait: number;
    failed: number;
  };
  processes: Record<string, string>;
}


type Kind = 'normal' | 'late' | 'invalid' | 'quota' | 'overage';

interface Plan {
  runTag: string;
  t0: number;
  lateHours: number;
  licenseIds: string[];
  quotaLicenseId: string;
  overageLicenseId: string;
  pInvalid: number;
  pLate: number;
  pQuota: number;
  pOverage: number;
}

const USAGE_TYPES = ['api_call', 'tokens', 'storage.gb', 'export:csv'];
const PLATFORMS = ['web', 'ios', 'android', 'server'];
const STATUS_CODES = [200, 200, 200, 200, 201, 204, 404, 429, 500];

/** Unique event `u`: the same object every time it is built, so a repeat carries the same payload. */
function eventOf(plan: Plan, u: number): { kind: Kind; event: Record<string, unknown> } {
  const r = rng(0x5eed ^ Math.imul(u + 1, 0x9e3779b1));
  const p = r();
  const key = `chaos-${plan.runTag}-${u}`;
  const base = {
    idempotencyKey: key,
    userId: `user-${Math.floor(r() * 300)}`,
    platform: PLATFORMS[Math.floor(r() * PLATFORMS.length)],
    statusCode: STATUS_CODES[Math.floor(r() * STATUS_CODES.length)],
    durationMs: Math.floor(r() * 900),
  };
  const licenseId = plan.licenseIds[Math.floor(r() * plan.licenseIds.length)]!;
  const usageType = USAGE_TYPES[Math.floor(r() * USAGE_TYPES.length)]!;
  const quantity = r() < 0.5 ? Math.floor(r() * 20) + 1 : (Math.floor(r() * 1_000_000) / 1000).toFixed(3);
  if (p < plan.pInvalid) {
    const variant = Math.floor(r() * 4);
    const invalid: Record<string, unknown> = { ...base, licenseId, usageType, quantity };
    if (variant === 0) invalid.quantity = -1;
    else if (variant === 1) invalid.usageType = 'Not A Usage Type!';
    else if (variant === 2) invalid.occurredAt = new Date(plan.t0 - 40 * DAY_MS).toISOString();
    else invalid.quantity = '1.1234567';
    return { kind: 'invalid', event: invalid };
  }
  if (p < plan.pInvalid + plan.pLate) {
    const currentHour = Math.floor(plan.t0 / HOUR_MS) * HOUR_MS;
    const hour = currentHour - (1 + Math.floor(r() * plan.lateHours)) * HOUR_MS;
    return { kind: 'late', event: { ...base, licenseId, usageType, quantity, occurredAt: new Date(hour + Math.floor(r() * HOUR_MS)).toISOString() } };
  }
  if (p < plan.pInvalid + plan.pLate + plan.pQuota) {
    return {
      kind: 'quota',
      event: { ...base, licenseId: plan.quotaLicenseId, usageType: 'api_call', quantity: 1, occurredAt: new Date(plan.t0 - Math.floor(r() * 60_000)).toISOString() },
    };
  }
  if (p < plan.pInvalid + plan.pLate + plan.pQuota + plan.pOverage) {
    return {
      kind: 'overage',
      event: { ...base, licenseId: plan.overageLicenseId, usageType: 'tokens', quantity: 1, occurredAt: new Date(plan.t0 - Math.floor(r() * 60_000)).toISOString() },
    };
  }
  return { kind: 'normal', event: { ...base, licenseId, usageType, quantity, occurredAt: new Date(plan.t0 - Math.floor(r() * 600_000)).toISOString() } };
}

const enum State {
  None = 0,
  Stored = 1,
  Rejected = 2,
}

interface Action {
  at: number;
  name: string;
  run: () => Promise<void>;
}

export async function runChaos(input: ChaosConfig): Promise<ChaosReport> {
  const config = {
    events: input.events,
    duplicateShare: input.duplicateShare ?? 0.1,
    lateShare: input.lateShare ?? 0.05,
    invalidShare: input.invalidShare ?? 0.01,
    singleShare: input.singleShare ?? 0.02,
    batchSize: input.batchSize ?? 500,
    batchClients: input.batchClients ?? 4,
    singleClients: input.singleClients ?? 4,
    licenses: input.licenses ?? 20,
    lateHours: input.lateHours ?? 6,
  };
  const log = input.log ?? (() => undefined);
  const started = Date.now();
  const startedAt = new Date(started).toISOString();
  const chaosLog: string[] = [];
  const note = (line: string) => {
    const stamped = `${((Date.now() - started) / 1000).toFixed(1)}s ${line}`;
    chaosLog.push(stamped);
    log(stamped);
  };

  const redis = await RedisServer.start();
  const failFirst = [500, 500, 503]; // the receiver's first answers: those deliveries are retried
  const receiver = await startReceiver(failFirst);
  const agent = new http.Agent({ keepAlive: true, maxSockets: config.batchClients + config.singleClients + 4 });
  const pool = new pg.Pool({ connectionString: input.databaseUrl, max: 3 });
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const adminKey = `tk_test_${randomUUID().replace(/-/g, '').slice(0, 26)}`;
  const env = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: input.databaseUrl,
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: 'chaos:',
    BOOTSTRAP_ADMIN_KEY: adminKey,
    // A killed worker's job is taken over once its lock has lapsed.
    JOB_LOCK_MS: '4000',
    // The run's Redis is flushed, never down: a quota decision taken without it could only come
    // from a machine too busy to answer in 1 s, where the README promises "a little" past a cap,
    // not a figure this run could check. Flushed counters are still rebuilt from PostgreSQL.
    QUOTA_REDIS_TIMEOUT_MS: '5000',
    WEBHOOK_RETRY_BASE_MS: '200',
    WEBHOOK_TIMEOUT_MS: '5000',
    // Receivers on loopback are refused by default once webhook address rules exist; this run's receiver is on 127.0.0.1.
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
  };
  const processes: Record<string, Child> = {};
  const processNotes: Record<string, string> = {};
  const startRole = (role: 'api' | 'worker' | 'scheduler', name: string, poolSize: number) => {
    const child = startTally(role, { ...env, DB_POOL_SIZE: String(poolSize) }, name);
    processes[role] = child;
    return child;
  };
  const startApi = async (name: string) => {
    const api = startRole('api', name, 8);
    await waitHealthy(api, baseUrl);
    return api;
  };
  const startWorker = async (name: string) => {
    const worker = startRole('worker', name, 4);
    await worker.waitForOutput('workers started', 120_000);
    return worker;
  };

  const counters = { retries: 0, connectionErrors: 0, unavailable: 0 };
  const call = async (procedure: string, body: unknown, key = adminKey): Promise<any> => {
    const answer = await requestWithRetry(agent, `${baseUrl}/api/trpc/${procedure}`, { method: 'POST', key, body: JSON.stringify(body) }, counters);
    if (answer.status !== 200) throw new Error(`${procedure}: HTTP ${answer.status}: ${answer.body.slice(0, 500)}`);
    return (JSON.parse(answer.body) as { result: { data: unknown } }).result.data;
  };
  const jobState = async (jobId: string): Promise<string | undefined> => {
    const url = `${baseUrl}/api/trpc/usage.jobStatus?input=${encodeURIComponent(JSON.stringify({ jobId }))}`;
    const answer = await request(agent, url, { method: 'GET', key: adminKey }).catch(() => null);
    if (!answer) return undefined;
    if (answer.status === 404) return 'lost';
    if (answer.status !== 200) return undefined;
    return (JSON.parse(answer.body) as { result: { data: { status: string } } }).result.data.status;
  };
  const waitForJob = async (jobId: string, timeoutMs = 240_000) =>
    waitFor(
      `job ${jobId} to complete`,
      async () => {
        const state = await jobState(jobId);
        if (state === 'failed' || state === 'lost') throw new Error(`job ${jobId} is ${state}`);
        return state === 'completed' ? state : undefined;
      },
      timeoutMs,
      500,
    );

  try {
    // ---------------------------------------------------------------- setup
    await startApi('api#1');
    // One at a time: each role migrates at start, and migrators queue on one advisory lock
    // (before 2e409e3, the second gave up after 10 s on a busy machine).
    await startWorker('worker#1');
    await startRole('scheduler', 'scheduler', 2).waitForOutput('scheduler started', 120_000);
    note('api, worker and scheduler are up');

    const tenant = await call('tenants.create', { name: 'Chaos', slug: `chaos-${randomUUID().slice(0, 8)}` });
    const owner = tenant.apiKey.key as string;
    const zones = ['UTC', 'America/New_York', 'Europe/Berlin', 'Asia/Kolkata', 'Australia/Adelaide', 'Pacific/Honolulu', 'Asia/Tokyo'];
    const licenseIds: string[] = [];
    for (let i = 0; i < config.licenses; i++) {
      licenseIds.push((await call('licenses.create', { name: `chaos ${i}`, plan: 'enterprise', timezone: zones[i % zones.length] }, owner)).id);
    }
    const quotaLicenseId = (await call('licenses.create', { name: 'chaos quota', plan: 'enterprise', timezone: 'UTC' }, owner)).id as string;
    const overageLicenseId = (await call('licenses.create', { name: 'chaos overage', plan: 'enterprise', timezone: 'UTC' }, owner)).id as string;

    const unique = Math.round(config.events * (1 - config.duplicateShare));
    // The quota license gets ~2% of the unique events against a cap of 1% of all events: it is
    // asked for about twice its cap. The overage license is asked for about twice its limit.
    const quotaLimit = Math.max(50, Math.round(config.events * 0.01));
    const pQuota = (2 * quotaLimit) / unique;
    const overageLimit = Math.max(25, Math.round(config.events * 0.004));
    const pOverage = (2 * overageLimit) / unique;
    await call('thresholds.create', { licenseId: quotaLicenseId, usageType: 'api_call', periodType: 'daily', limitQuantity: quotaLimit, allowOverage: false }, owner);
    await call(
      'thresholds.create',
      { licenseId: overageLicenseId, usageType: 'tokens', periodType: 'daily', limitQuantity: overageLimit, gracePercentage: 10, allowOverage: true, overageRateCents: 3 },
      owner,
    );
    await call('webhooks.create', { url: receiver.url }, owner);

    // Hours that are rolled up before any event arrives: the late events go into them.
    const t0 = Date.now();
    const currentHour = Math.floor(t0 / HOUR_MS) * HOUR_MS;
    const lateWindows = Array.from({ length: config.lateHours }, (_, k) => `${new Date(currentHour - (k + 1) * HOUR_MS).toISOString().slice(0, 13)}Z`);
    const preJobs: string[] = [];
    for (const window of lateWindows) preJobs.push((await call('jobs.trigger', { name: 'usage.aggregate.hourly', window })).jobId);
    for (const id of preJobs) await waitForJob(id);
    note(`rolled up ${lateWindows.length} hours before the traffic (${lateWindows.at(-1)} .. ${lateWindows[0]})`);

    const plan: Plan = {
      runTag: randomUUID().slice(0, 8),
      t0,
      lateHours: config.lateHours,
      licenseIds,
      quotaLicenseId,
      overageLicenseId,
      pInvalid: (config.invalidShare * config.events) / unique,
      pLate: (config.lateShare * config.events) / unique,
      pQuota,
      pOverage,
    };
    const setupSeconds = (Date.now() - started) / 1000;

    // ---------------------------------------------------------------- what is sent
    // sends[s] = the unique event of send s; a repeat points at an earlier one.
    const sends = new Int32Array(config.events);
    const repeat = new Uint8Array(config.events);
    const single = new Uint8Array(config.events);
    {
      const r = rng(0xc4a05);
      let next = 0;
      for (let s = 0; s < config.events; s++) {
        const remaining = config.events - s;
        const uniqueLeft = unique - next;
        const isRepeat = next > 0 && (uniqueLeft === 0 || (remaining > uniqueLeft && r() < config.duplicateShare));
        if (isRepeat) {
          // mostly a recent event (a retry), sometimes an old one
          const back = r() < 0.8 ? Math.floor(r() * Math.min(next, 2000)) : Math.floor(r() * next);
          sends[s] = next - 1 - back;
          repeat[s] = 1;
        } else sends[s] = next++;
        single[s] = r() < config.singleShare ? 1 : 0;
      }
    }
    const kinds = new Map<Kind, number>();
    const kindOf = new Uint8Array(unique);
    const kindCodes: Kind[] = ['normal', 'late', 'invalid', 'quota', 'overage'];
    for (let u = 0; u < unique; u++) {
      const kind = eventOf(plan, u).kind;
      kindOf[u] = kindCodes.indexOf(kind);
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }

    // ---------------------------------------------------------------- traffic
    const state = new Uint8Array(unique);
    const acceptedCount = new Uint8Array(unique);
    const answers = { accepted: 0, duplicate: 0, rejected: {} as Record<string, number>, serverErrors: 0, unexpected: [] as string[] };
    let storedAnsweredQuota = 0;
    let answered = 0;
    let quotaRefused = 0;
    const record = (u: number, status: 'accepted' | 'duplicate' | 'rejected', code: string | null, knownStored: boolean) => {
      if (status === 'accepted') {
        answers.accepted += 1;
        acceptedCount[u] = Math.min(255, acceptedCount[u]! + 1);
        state[u] = State.Stored;
      } else if (status === 'duplicate') {
        answers.duplicate += 1;
        state[u] = State.Stored;
      } else {
        const c = code ?? 'UNKNOWN';
        answers.rejected[c] = (answers.rejected[c] ?? 0) + 1;
        if (c === 'QUOTA_EXCEEDED') {
          quotaRefused += 1;
          if (knownStored) storedAnsweredQuota += 1;
        }
        if (state[u] === State.None) state[u] = State.Rejected;
      }
    };
    const unexpected = (what: string) => {
      if (answers.unexpected.length < 20) answers.unexpected.push(what.slice(0, 400));
    };

    const batchSends: number[] = [];
    const singleSends: number[] = [];
    for (let s = 0; s < config.events; s++) (single[s] ? singleSends : batchSends).push(s);
    let batchCursor = 0;
    let singleCursor = 0;
    let batches = 0;

    // Chaos happens at points of progress; clients wait for an action that is due (a fast run
    // cannot finish before its chaos).
    const actions: Action[] = [];
    let pending: Action | undefined;
    const gate = async () => {
      while (pending && answered / config.events >= pending.at + 0.03) await sleep(20);
    };

    const sendBatch = async (slice: number[]) => {
      const knownStored = slice.map((s) => state[sends[s]!] === State.Stored);
      const body = JSON.stringify({ events: slice.map((s) => eventOf(plan, sends[s]!).event) });
      const answer = await requestWithRetry(agent, `${baseUrl}/api/trpc/usage.trackEvents`, { method: 'POST', key: owner, body }, counters);
      batches += 1;
      if (answer.status !== 200) {
        if (answer.status >= 500) answers.serverErrors += 1;
        unexpected(`usage.trackEvents HTTP ${answer.status}: ${answer.body}`);
        return;
      }
      const data = (JSON.parse(answer.body) as { result: { data: { results: { index: number; status: 'accepted' | 'duplicate' | 'rejected' }[]; rejected: { index: number; code: string }[] } } })
        .result.data;
      const codes = new Map(data.rejected.map((r) => [r.index, r.code]));
      for (const r of data.results) record(sends[slice[r.index]!]!, r.status, codes.get(r.index) ?? null, knownStored[r.index]!);
      answered += slice.length;
    };
    const sendSingle = async (s: number) => {
      const u = sends[s]!;
      const knownStored = state[u] === State.Stored;
      const answer: Answer = await requestWithRetry(
        agent,
        `${baseUrl}/api/trpc/usage.trackEvent`,
        { method: 'POST', key: owner, body: JSON.stringify(eventOf(plan, u).event) },
        counters,
      );
      answered += 1;
      const body = JSON.parse(answer.body) as { result?: { data: { duplicate: boolean } }; error?: { data: { appCode?: string; code?: string } } };
      if (answer.status === 200) record(u, body.result!.data.duplicate ? 'duplicate' : 'accepted', null, knownStored);
      else if (answer.status === 429) record(u, 'rejected', 'QUOTA_EXCEEDED', knownStored);
      else if (answer.status >= 400 && answer.status < 500) record(u, 'rejected', body.error?.data.appCode ?? body.error?.data.code ?? `HTTP_${answer.status}`, knownStored);
      else {
        if (answer.status >= 500) answers.serverErrors += 1;
        unexpected(`usage.trackEvent HTTP ${answer.status}: ${answer.body}`);
      }
    };

    const batchClient = async () => {
      for (;;) {
        await gate();
        if (batchCursor >= batchSends.length) return;
        const slice = batchSends.slice(batchCursor, batchCursor + config.batchSize);
        batchCursor += slice.length;
        await sendBatch(slice);
      }
    };
    const singleClient = async () => {
      for (;;) {
        await gate();
        if (singleCursor >= singleSends.length) return;
        await sendSingle(singleSends[singleCursor++]!);
      }
    };

    const chaos = { workerKills: 0, apiRestarts: 0, redisFlushes: 0, keysFlushed: [] as number[] };
    const busyJobs: string[] = [];
    const killWorker = async () => {
      // Give the worker something to be in the middle of: a recalculation of the last days.
      const today = new Date();
      const { jobId } = await call('usage.recalculateAggregates', {
        startDate: new Date(today.getTime() - 2 * DAY_MS).toISOString().slice(0, 10),
        endDate: today.toISOString().slice(0, 10),
      });
      busyJobs.push(jobId);
      const active = await waitFor(`${jobId} to start`, async () => ((await jobState(jobId)) === 'active' ? true : undefined), 10_000, 50).catch(() => false);
      const worker = processes.worker!;
      await worker.kill('SIGKILL');
      chaos.workerKills += 1;
      note(`SIGKILL ${worker.name} (recalculation ${active ? 'running' : 'not started yet'})`);
      const next = await startWorker(`worker#${chaos.workerKills + 1}`);
      note(`${next.name} started`);
    };
    const restartApi = async () => {
      const api = processes.api!;
      await api.kill('SIGKILL');
      chaos.apiRestarts += 1;
      note(`SIGKILL ${api.name} with requests in flight`);
      const next = await startApi(`api#${chaos.apiRestarts + 1}`);
      note(`${next.name} healthy`);
    };
    const flushRedis = async () => {
      const keys = await redis.flush();
      chaos.redisFlushes += 1;
      chaos.keysFlushed.push(keys);
      note(`FLUSHALL #${chaos.redisFlushes} (${keys} keys)`);
    };
    actions.push(
      { at: 0.1, name: 'kill worker', run: killWorker },
      { at: 0.25, name: 'flush redis', run: flushRedis },
      { at: 0.4, name: 'kill worker', run: killWorker },
      { at: 0.5, name: 'restart api', run: restartApi },
      { at: 0.65, name: 'flush redis', run: flushRedis },
      { at: 0.8, name: 'kill worker', run: killWorker },
    );
    const controller = async () => {
      for (const action of actions) {
        pending = action;
        while (answered / config.events < action.at) await sleep(20);
        await action.run();
      }
      pending = undefined;
    };

    const trafficStarted = Date.now();
    note(`traffic: ${config.events} events (${unique} unique) from ${config.batchClients} batch and ${config.singleClients} single clients`);
    const progress = setInterval(() => log(`  ${Math.round((100 * answered) / config.events)}% answered`), 10_000);
    try {
      await Promise.all([
        controller(),
        ...Array.from({ length: config.batchClients }, batchClient),
        ...Array.from({ length: config.singleClients }, singleClient),
      ]);
    } finally {
      clearInterval(progress);
    }
    const trafficSeconds = (Date.now() - trafficStarted) / 1000;
    note(`traffic done in ${trafficSeconds.toFixed(1)} s`);

    // ---------------------------------------------------------------- restore, as the scheduler would
    const restoreStarted = Date.now();
    const restoreJobs: { id: string; name: string; status: string }[] = [];
    const runJob = async (name: string, body: unknown) => {
      const { jobId } = await call(name, body);
      await waitForJob(jobId);
      restoreJobs.push({ id: jobId, name: (body as { name?: string }).name ?? name, status: 'completed' });
    };
    // Every hour with events that has ended, oldest first (the latest run also folds in every marked hour).
    const lastEnded = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS;
    for (let h = currentHour - config.lateHours * HOUR_MS; h <= lastEnded; h += HOUR_MS) {
      await runJob('jobs.trigger', { name: 'usage.aggregate.hourly', window: `${new Date(h).toISOString().slice(0, 13)}Z` });
    }
    const checkBounds = () => ({ hoursBefore: new Date(Math.floor(Date.now() / HOUR_MS) * HOUR_MS), daysEndedBefore: new Date() });
    const allLicenses = [...licenseIds, quotaLicenseId, overageLicenseId];
    const afterHourly = await rollupDifferences(pool, allLicenses, checkBounds());
    note(`after the hourly runs: ${afterHourly.hourly.length} hourly rollup rows differ from a recomputation`);
    const today = new Date();
    await runJob('usage.recalculateAggregates', {
      startDate: new Date(currentHour - config.lateHours * HOUR_MS - DAY_MS).toISOString().slice(0, 10),
      endDate: today.toISOString().slice(0, 10),
    });
    const diffs = await rollupDifferences(pool, allLicenses, checkBounds());
    note(`after the recalculation: ${diffs.hourly.length} hourly and ${diffs.daily.length} daily rows differ`);

    // Alerts ingestion may have missed (or whose webhook job a flush took) come from the hourly check.
    await runJob('jobs.trigger', { name: 'usage.thresholds.check' });
    const webhookDeadline = Date.now() + 120_000;
    let pendingDeliveries = 0;
    for (;;) {
      pendingDeliveries = Number((await pool.query(`SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'PENDING'`)).rows[0].n);
      if (pendingDeliveries === 0 || Date.now() > webhookDeadline) break;
      await sleep(500);
    }
    const restoreSeconds = (Date.now() - restoreStarted) / 1000;
    // The recalculations a killed worker was running: taken over by the next worker once their
    // lock lapsed, or gone with a flush ('lost': BullMQ forgot the job; its JobRun row, if it
    // started, still says 'active').
    const busyJobStates = await Promise.all(busyJobs.map(async (id) => ({ id, name: 'usage.recalculate (its worker was killed)', status: (await jobState(id)) ?? 'unknown' })));

    // ---------------------------------------------------------------- what the database holds
    const tenantId = tenant.tenant.id as string;
    const rowsByKey = await pool.query<{ key: string; n: string }>(
      `SELECT idempotency_key AS key, count(*) AS n FROM usage_events WHERE tenant_id = $1 GROUP BY 1`,
      [tenantId],
    );
    let rows = 0;
    let duplicateRows = 0;
    let unexpectedRows = 0;
    const inTable = new Uint8Array(unique);
    const prefix = `chaos-${plan.runTag}-`;
    for (const r of rowsByKey.rows) {
      const n = Number(r.n);
      rows += n;
      if (n > 1) duplicateRows += 1;
      const u = r.key?.startsWith(prefix) ? Number(r.key.slice(prefix.length)) : Number.NaN;
      if (!Number.isInteger(u) || u < 0 || u >= unique || state[u] !== State.Stored) unexpectedRows += 1;
      else inTable[u] = 1;
    }
    let storedKeys = 0;
    let missingRows = 0;
    let acceptedTwice = 0;
    for (let u = 0; u < unique; u++) {
      if (state[u] === State.Stored) {
        storedKeys += 1;
        if (!inTable[u]) missingRows += 1;
      }
      if (acceptedCount[u]! > 1) acceptedTwice += 1;
    }

    const quotaRows = await pool.query<{ period: string; admitted: string }>(
      `SELECT to_char(date_trunc('day', occurred_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS period, sum(quantity)::text AS admitted
         FROM usage_events WHERE license_id = $1 AND usage_type = 'api_call' GROUP BY 1 ORDER BY 1`,
      [quotaLicenseId],
    );
    const quotaPeriods = quotaRows.rows.map((r) => ({
      period: r.period,
      admitted: Number(r.admitted),
      overAdmitted: Math.max(0, Number(r.admitted) - quotaLimit),
    }));

    const alertIds = (await pool.query<{ id: string }>(`SELECT id FROM usage_alerts WHERE tenant_id = $1`, [tenantId])).rows.map((r) => r.id);
    const overageIds = (await pool.query<{ id: string }>(`SELECT id FROM usage_overages WHERE tenant_id = $1`, [tenantId])).rows.map((r) => r.id);
    const expected = new Set([...alertIds, ...overageIds]);
    const deliveriesByEvent = new Map<string, Set<string>>();
    let repeatedPosts = 0;
    let refusedPosts = 0;
    for (const [i, post] of receiver.received.entries()) {
      // a post the receiver answered with an error does not count as delivered
      if (i < failFirst.length) {
        refusedPosts += 1;
        continue;
      }
      const eventId = String(post.headers['tally-event-id'] ?? (JSON.parse(post.body) as { id: string }).id);
      const deliveryId = String(post.headers['tally-delivery-id'] ?? '');
      const seen = deliveriesByEvent.get(eventId);
      if (seen) repeatedPosts += 1;
      deliveriesByEvent.set(eventId, (seen ?? new Set()).add(deliveryId));
    }
    const failed = Number((await pool.query(`SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'FAILED'`)).rows[0].n);

    for (const [role, child] of Object.entries(processes)) processNotes[role] = `${child.name}, alive: ${child.alive}`;
    return {
      config,
      startedAt,
      seconds: {
        total: Math.round((Date.now() - started) / 100) / 10,
        setup: Math.round(setupSeconds * 10) / 10,
        traffic: Math.round(trafficSeconds * 10) / 10,
        restore: Math.round(restoreSeconds * 10) / 10,
      },
      sent: {
        total: config.events,
        unique,
        repeats: config.events - unique,
        late: kinds.get('late') ?? 0,
        invalid: kinds.get('invalid') ?? 0,
        quotaLicense: kinds.get('quota') ?? 0,
        single: singleSends.length,
        batches,
      },
      answers,
      client: counters,
      chaos: { ...chaos, log: chaosLog },
      storedKeys,
      rows,
      acceptedTwice,
      duplicateRows,
      missingRows,
      unexpectedRows,
      storedAnsweredQuota,
      rollups: {
        hourlyDiffsAfterHourlyRuns: afterHourly.hourly.length,
        hourlyDiffs: diffs.hourly.length,
        dailyDiffs: diffs.daily.length,
        sample: [...diffs.hourly.slice(0, 3), ...diffs.daily.slice(0, 3), ...afterHourly.hourly.slice(0, 3)],
        jobs: [...busyJobStates, ...restoreJobs],
      },
      quota: {
        limit: quotaLimit,
        periods: quotaPeriods,
        attempts: kinds.get('quota') ?? 0,
        refused: quotaRefused,
        maxOverAdmitted: Math.max(0, ...quotaPeriods.map((p) => p.overAdmitted)),
      },
      webhooks: {
        expectedEvents: expected.size,
        receivedEvents: deliveriesByEvent.size,
        posts: receiver.received.length,
        refusedPosts,
        missing: [...expected].filter((id) => !deliveriesByEvent.has(id)),
        unexpected: [...deliveriesByEvent.keys()].filter((id) => !expected.has(id)),
        multipleDeliveries: [...deliveriesByEvent].filter(([, ids]) => ids.size > 1).map(([id]) => id),
        repeatedPosts,
        pendingAfterWait: pendingDeliveries,
        failed,
      },
      processes: processNotes,
    };
  } catch (error) {
    const tails = Object.values(processes)
      .map((p) => `--- ${p.name} (alive: ${p.alive}) ---\n${p.output().slice(-3000)}`)
      .join('\n');
    throw new Error(`${(error as Error).message}\n${chaosLog.join('\n')}\n${tails}`, { cause: error });
  } finally {
    for (const child of Object.values(processes)) await child.stop(10_000);
    agent.destroy();
    await receiver.close();
    await redis.stop();
    await pool.end();
  }
}
