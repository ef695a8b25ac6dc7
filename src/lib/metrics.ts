import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'procedure' | 'status'>;
  httpDuration: Histogram<'procedure'>;
  eventsAccepted: Counter;
  eventsDuplicate: Counter;
  eventsRejected: Counter<'reason'>;
  ingestFlushSize: Histogram;
  jobDuration: Histogram<'job' | 'status'>;
  jobFailures: Counter<'job'>;
  queueDepth: Gauge<'queue' | 'state'>;
  analyticsCache: Counter<'view' | 'result'>;
  replicaUp: Gauge;
  replicaLagSeconds: Gauge;
  replicaLagBytes: Gauge;
  dbReads: Counter<'target' | 'reason'>;
  authRefusals: Counter<'reason'>;
  billingReconciliationDifferences: Counter;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tally_' });
  return {
    registry,
    httpRequests: new Counter({
      name: 'tally_http_requests_total',
      help: 'HTTP requests by tRPC procedure (or route) and status code',
      labelNames: ['procedure', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'tally_http_request_duration_seconds',
      help: 'HTTP request latency by tRPC procedure (or route)',
      labelNames: ['procedure'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    eventsAccepted: new Counter({
      name: 'tally_events_accepted_total',
      help: 'Usage events stored',
      registers: [registry],
    }),
    eventsDuplicate: new Counter({
      name: 'tally_events_duplicate_total',
      help: 'Usage events answered as duplicates of an earlier event (idempotency key)',
      registers: [registry],
    }),
    eventsRejected: new Counter({
      name: 'tally_events_rejected_total',
      help: 'Usage events refused, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    ingestFlushSize: new Histogram({
      name: 'tally_ingest_flush_events',
      help: 'Events written per multi-row insert',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers: [registry],
    }),
    jobDuration: new Histogram({
      name: 'tally_job_duration_seconds',
      help: 'Job run time by catalog name and outcome',
      labelNames: ['job', 'status'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers: [registry],
    }),
    jobFailures: new Counter({
      name: 'tally_job_failures_total',
      help: 'Failed job attempts by catalog name',
      labelNames: ['job'],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'tally_queue_jobs',
      help: 'Jobs per queue and state (read from Redis when scraped)',
      labelNames: ['queue', 'state'],
      registers: [registry],
    }),
    analyticsCache: new Counter({
      name: 'tally_analytics_cache_requests_total',
      help: 'Analytics reads by view and cache result (hit or miss); hit rate = hit / (hit + miss)',
      labelNames: ['view', 'result'],
      registers: [registry],
    }),
    replicaUp: new Gauge({
      name: 'tally_db_replica_up',
      help: 'Whether the read replica (DATABASE_READ_URL) answered the last lag measurement as a standby of the primary (1) or not (0)',
      registers: [registry],
    }),
    replicaLagSeconds: new Gauge({
      name: 'tally_db_replica_lag_seconds',
      help: 'At most how far the read replica is behind the primary, from WAL positions (exact to one poll; 0 when caught up at the poll)',
      registers: [registry],
    }),
    replicaLagBytes: new Gauge({
      name: 'tally_db_replica_lag_bytes',
      help: 'WAL bytes the read replica had not replayed at the last measurement (pg_current_wal_lsn on the primary minus pg_last_wal_replay_lsn)',
      registers: [registry],
    }),
    dbReads: new Counter({
      name: 'tally_db_reads_total',
      help: 'Read-only views by where they read (target: replica or primary) and why (replica, no_replica, replica_lagging past DATABASE_READ_MAX_LAG_MS, replica_down)',
      labelNames: ['target', 'reason'],
      registers: [registry],
    }),
    authRefusals: new Counter({
      name: 'tally_auth_refusals_total',
      help: 'Requests refused at authentication: missing, malformed, unknown, revoked, throttled (too many failures), rate_limited (a key past its rateLimitPerHour)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    billingReconciliationDifferences: new Counter({
      name: 'tally_billing_reconciliation_differences_total',
      help: "Differences billing.reconcile found between Stripe's meter event summaries and the ledger or rollups (per license, meter and day checked)",
      registers: [registry],
    }),
  };
}
