import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { type TopologyReport, runTopology } from './topology';

/**
 * Many processes (README, Scaling): 2 API processes, 2 workers and 2 schedulers started at the
 * same instant on a database that does not exist yet, one Redis, under traffic over both API
 * processes while a worker is SIGKILLed mid-job (twice) and an API process is SIGKILLed and
 * started again (see topology.ts). With REDIS_CLUSTER_NODES set, every process runs on that
 * Redis Cluster instead of a redis-server of the test's own. TOPOLOGY_TEST_REPORT=<file> keeps
 * the run's report (figures, chaos log) as JSON.
 */
const EVENTS = Number(process.env.TOPOLOGY_TEST_EVENTS ?? 30_000);

beforeEach(() => expect.hasAssertions());

const base = new URL(process.env.DATABASE_URL!);
const name = `${base.pathname.slice(1)}_topology`;
let report: TopologyReport;

async function dropDatabase(): Promise<void> {
  const admin = new URL(base.toString());
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await client.end();
}

beforeAll(async () => {
  await dropDatabase();
  const url = new URL(base.toString());
  url.pathname = `/${name}`;
  report = await runTopology({ events: EVENTS, databaseUrl: url.toString(), redisClusterNodes: process.env.REDIS_CLUSTER_NODES || undefined });
}, 600_000);

afterAll(async () => {
  if (report && process.env.TOPOLOGY_TEST_REPORT) writeFileSync(process.env.TOPOLOGY_TEST_REPORT, `${JSON.stringify(report, null, 2)}\n`);
  await dropDatabase();
});

it('brings up all six processes started together on a fresh database: one migrates, the others wait or find the schema current', () => {
  expect(report.startup.failed).toEqual([]);
  expect(report.startup.migrated).toHaveLength(1);
  expect(report.startup.migrationRows).toBe(report.startup.migrationNames);
  expect(report.startup.migrationNames).toBeGreaterThan(0);
});

it('runs each scheduled window once although two schedulers enqueue it', () => {
  expect(report.scheduledRuns.windowsRunTwice).toEqual([]);
  // both schedulers' boot catch-up asked for the hour before the start: it ran once
  expect(report.scheduledRuns.bootHourlyRuns).toBe(1);
});

it('admits exactly the hard limit of a burst spread over both API processes, and refuses the next event', () => {
  expect(report.quota.other).toEqual([]);
  expect({ accepted: report.quota.accepted, refused: report.quota.refused, rows: report.quota.rows }).toEqual({
    accepted: report.quota.limit,
    refused: report.quota.attempts - report.quota.limit,
    rows: report.quota.limit,
  });
  expect(report.quota.perApi.every((n) => n > 0)).toBe(true);
  expect(report.quota.afterBurst).toBe(429);
});

it('stores every event answered as stored exactly once through an API process SIGKILLed and restarted under load', () => {
  expect(report.chaos.apiRestarts).toBe(1);
  expect(report.traffic.serverErrors).toBe(0);
  expect(report.traffic.unexpected).toEqual([]);
  expect(report.traffic.accepted + report.traffic.duplicate).toBeGreaterThanOrEqual(report.traffic.sent - report.traffic.rejected);
  expect(report.traffic.failovers).toBeGreaterThan(0);
  expect(report.traffic.perApi.every((n) => n > 0)).toBe(true);
  expect(report.rows).toBe(report.storedKeys);
  expect(report.storedKeys).toBe(report.traffic.unique);
  expect({ duplicateRows: report.duplicateRows, missingRows: report.missingRows, unexpectedRows: report.unexpectedRows, acceptedTwice: report.acceptedTwice }).toEqual({
    duplicateRows: 0,
    missingRows: 0,
    unexpectedRows: 0,
    acceptedTwice: 0,
  });
});

it('finishes the jobs of a worker SIGKILLed mid-job on another worker, and ends with rollups equal to the raw events', () => {
  expect(report.chaos.workerKills).toHaveLength(2);
  for (const kill of report.chaos.workerKills) {
    expect(kill.status).toBe('completed');
    expect(kill.completedBy.length).toBeGreaterThan(0);
    expect(kill.completedBy).not.toContain(kill.killed);
  }
  expect(report.rollups.sample).toEqual([]);
  expect({ afterHourly: report.rollups.hourlyDiffsAfterHourlyRuns, hourly: report.rollups.hourlyDiffs, daily: report.rollups.dailyDiffs }).toEqual({
    afterHourly: 0,
    hourly: 0,
    daily: 0,
  });
});
