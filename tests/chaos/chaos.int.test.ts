import { createIsolatedDatabase } from '../helpers/isolated-db';
import { type ChaosReport, runChaos } from './scenario';

/**
 * 200,000 events (10% repeated keys, 5% late, 1% invalid) from concurrent clients over HTTP
 * while the worker is SIGKILLed three times, the API SIGKILLed and started again, and Redis
 * flushed twice (see scenario.ts). Tally runs as child processes on a database and a
 * redis-server of this file's own; every process is stopped when the scenario ends.
 */
const EVENTS = Number(process.env.CHAOS_TEST_EVENTS ?? 200_000);

beforeEach(() => expect.hasAssertions());

let db: ReturnType<typeof createIsolatedDatabase>;
let report: ChaosReport;

beforeAll(async () => {
  db = createIsolatedDatabase('chaos');
  report = await runChaos({ events: EVENTS, databaseUrl: db.url });
}, 900_000);

afterAll(async () => {
  await db?.drop();
});

it('ran its chaos during the traffic: three worker kills, one API restart, two Redis flushes', () => {
  expect(report.chaos).toMatchObject({ workerKills: 3, apiRestarts: 1, redisFlushes: 2 });
  // every event got a final answer, and the restart was felt by the clients
  expect(report.answers.serverErrors).toBe(0);
  expect(report.answers.unexpected).toEqual([]);
  expect(report.answers.accepted + report.answers.duplicate + Object.values(report.answers.rejected).reduce((s, n) => s + n, 0)).toBe(EVENTS);
  expect(report.client.connectionErrors).toBeGreaterThan(0);
});

it('stores every event answered as stored exactly once, and nothing else', () => {
  expect(report.rows).toBe(report.storedKeys);
  expect({ duplicateRows: report.duplicateRows, missingRows: report.missingRows, unexpectedRows: report.unexpectedRows, acceptedTwice: report.acceptedTwice }).toEqual({
    duplicateRows: 0,
    missingRows: 0,
    unexpectedRows: 0,
    acceptedTwice: 0,
  });
  // invalid events were refused one by one, with a code
  expect(report.answers.rejected.INVALID_EVENT ?? 0).toBeGreaterThan(0);
  expect(report.storedKeys).toBeLessThan(report.sent.unique);
});

it('has rollups equal to a from-scratch recomputation once the hourly runs and a recalculation have run', () => {
  expect(report.rollups.sample).toEqual([]);
  expect({ afterHourly: report.rollups.hourlyDiffsAfterHourlyRuns, hourly: report.rollups.hourlyDiffs, daily: report.rollups.dailyDiffs }).toEqual({
    afterHourly: 0,
    hourly: 0,
    daily: 0,
  });
});

it('never admits the hard-quota license past its cap (one API process: the documented bound is none)', () => {
  expect(report.quota.refused).toBeGreaterThan(0);
  expect(report.quota.periods.length).toBeGreaterThan(0);
  expect(report.quota.periods.every((p) => p.admitted <= report.quota.limit)).toBe(true);
  expect(report.storedAnsweredQuota).toBe(0);
});

it('delivers the webhook of every alert and overage, each under one delivery (receivers dedupe retries by id)', () => {
  // quota license: 50/80/95/100; overage license: 50/80/95/100 and the overage
  expect(report.webhooks.expectedEvents).toBeGreaterThanOrEqual(9);
  expect({ missing: report.webhooks.missing, unexpected: report.webhooks.unexpected, multiple: report.webhooks.multipleDeliveries }).toEqual({
    missing: [],
    unexpected: [],
    multiple: [],
  });
  expect(report.webhooks.pendingAfterWait).toBe(0);
  expect(report.webhooks.failed).toBe(0);
});
