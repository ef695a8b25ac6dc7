/**
 * `npm run chaos`: the chaos scenario of tests/chaos (worker SIGKILLed three times, the API
 * SIGKILLed and started again, Redis flushed twice, while concurrent clients send events) with
 * CHAOS_EVENTS (1,000,000) events, on a throw-away database and a redis-server of its own.
 * Prints what was sent, answered and stored, the chaos done, the rollup check, quota
 * over-admission and webhook deliveries, and writes bench/results/chaos-<time>.json.
 * Exit status 1 when an invariant did not hold.
 */
import { createDatabase, databaseUrl, dropDatabase, intFromEnv, renderTable, writeResults } from './lib';
import { type ChaosReport, runChaos } from '../tests/chaos/scenario';

/** What must hold after the run, each with the figure that says so. */
function invariants(r: ChaosReport): [string, boolean, string][] {
  return [
    ['every call answered, no 5xx', r.answers.serverErrors === 0 && r.answers.unexpected.length === 0, `${r.answers.serverErrors} 5xx, ${r.answers.unexpected.length} unexpected`],
    ['rows = events answered as stored', r.rows === r.storedKeys && r.missingRows === 0 && r.unexpectedRows === 0, `${r.rows} rows, ${r.storedKeys} keys answered stored, ${r.missingRows} missing, ${r.unexpectedRows} unexpected`],
    ['no event stored or accepted twice', r.duplicateRows === 0 && r.acceptedTwice === 0, `${r.duplicateRows} keys stored twice, ${r.acceptedTwice} accepted twice`],
    [
      'rollups = recomputation',
      r.rollups.hourlyDiffsAfterHourlyRuns === 0 && r.rollups.hourlyDiffs === 0 && r.rollups.dailyDiffs === 0,
      `after hourly runs ${r.rollups.hourlyDiffsAfterHourlyRuns} hourly diffs; after recalculation ${r.rollups.hourlyDiffs} hourly, ${r.rollups.dailyDiffs} daily`,
    ],
    ['hard quota never passed', r.quota.maxOverAdmitted === 0 && r.storedAnsweredQuota === 0, `cap ${r.quota.limit}/day, admitted ${r.quota.periods.map((p) => `${p.admitted} (${p.period})`).join(', ')}, ${r.quota.refused} refused`],
    [
      'every alert webhook delivered once',
      r.webhooks.missing.length === 0 && r.webhooks.unexpected.length === 0 && r.webhooks.multipleDeliveries.length === 0 && r.webhooks.pendingAfterWait === 0,
      `${r.webhooks.receivedEvents}/${r.webhooks.expectedEvents} events, ${r.webhooks.posts} posts (${r.webhooks.refusedPosts} refused by the receiver on purpose, ${r.webhooks.repeatedPosts} repeats of an id)`,
    ],
  ];
}

async function main(): Promise<void> {
  const events = intFromEnv('CHAOS_EVENTS', 1_000_000);
  const startedAt = new Date();
  const dbName = `tally_chaos_${process.pid}_${Date.now()}`;
  await createDatabase(dbName);
  try {
    console.log(`chaos: ${events.toLocaleString('en-US')} events`);
    const report = await runChaos({
      events,
      databaseUrl: databaseUrl(dbName),
      batchClients: intFromEnv('CHAOS_BATCH_CLIENTS', 4),
      singleClients: intFromEnv('CHAOS_SINGLE_CLIENTS', 4),
      log: (line) => console.log(line),
    });
    const a = report.answers;
    const rejected = Object.values(a.rejected).reduce((s, n) => s + n, 0);
    console.log(
      renderTable(
        ['figure', 'value'],
        [
          ['events sent (unique + repeats)', `${report.sent.total} (${report.sent.unique} + ${report.sent.repeats}); late ${report.sent.late}, invalid ${report.sent.invalid}, single calls ${report.sent.single}, batches ${report.sent.batches}`],
          ['answers', `accepted ${a.accepted}, duplicate ${a.duplicate}, rejected ${rejected} ${JSON.stringify(a.rejected)}`],
          ['client retries', `${report.client.retries} (connection errors ${report.client.connectionErrors}, 502/503 ${report.client.unavailable})`],
          ['chaos', `${report.chaos.workerKills} worker SIGKILLs, ${report.chaos.apiRestarts} API restart, ${report.chaos.redisFlushes} Redis flushes (${report.chaos.keysFlushed.join(', ')} keys)`],
          ['rows / keys answered stored', `${report.rows} / ${report.storedKeys}`],
          ['rollup rows differing', `${report.rollups.hourlyDiffsAfterHourlyRuns} after hourly runs; ${report.rollups.hourlyDiffs} hourly + ${report.rollups.dailyDiffs} daily after recalculation`],
          ['quota over-admission', `${report.quota.maxOverAdmitted} (cap ${report.quota.limit}, ${report.quota.attempts} attempts, ${report.quota.refused} refusals)`],
          ['webhooks', `${report.webhooks.receivedEvents} of ${report.webhooks.expectedEvents} events delivered, ${report.webhooks.posts} posts`],
          ['time', `${report.seconds.total} s (setup ${report.seconds.setup}, traffic ${report.seconds.traffic}, restore ${report.seconds.restore})`],
        ],
      ),
    );
    const checks = invariants(report);
    console.log(renderTable(['invariant', 'held', 'figures'], checks.map(([what, ok, figures]) => [what, ok ? 'yes' : 'NO', figures])));
    console.log(`results: ${await writeResults('chaos', startedAt, { ...report, invariants: checks.map(([what, held, figures]) => ({ what, held, figures })) })}`);
    if (checks.some(([, ok]) => !ok)) process.exitCode = 1;
  } finally {
    await dropDatabase(dbName);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
