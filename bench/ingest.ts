/**
 * Ingest benchmark (DESIGN.md section 7, first two rows and the memory row):
 *   (a) batch ingest: `usage.trackEvents` with 1,000 events per call, ~10% of them repeats of
 *       events already sent (same payload, so they come back as duplicates), 4 concurrent clients;
 *   (b) single-event ingest: `usage.trackEvent`, 64 concurrent keep-alive clients, for a fixed time;
 *   (c) the raw ceiling: the same kind of rows inserted straight through pg, one
 *       INSERT … SELECT FROM unnest(...) ON CONFLICT DO NOTHING per 1,000 rows, into the same
 *       usage_events table, 4 connections, as many rows as (a) sent (with the same share of
 *       repeated rows, which ON CONFLICT drops). No idempotency_keys table: this is the floor
 *       of what PostgreSQL itself costs;
 *   (d) a lone event: one client sending `usage.trackEvent` one at a time. Group commit gathers
 *       events only while a statement is in flight, so a lone event must not wait for
 *       INGEST_FLUSH_INTERVAL_MS (moved here from tests/integration/ingest.int.test.ts, which
 *       asserted it as elapsed time; see it with BENCH_ONLY=d BENCH_API_ENV=INGEST_FLUSH_INTERVAL_MS=1000).
 * Each phase checks its own answers and, afterwards, the stored rows: a benchmark that stores
 * the wrong number of events is an error, not a figure.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import pg from 'pg';
import {
  type BenchContext,
  type BenchReport,
  type BenchTenant,
  type Figure,
  type PhaseReport,
  createTenantWithLicense,
  httpRequest,
  intFromEnv,
  measurePhase,
  round,
  rssOf,
  summarizeLatencies,
} from './lib';

export interface IngestBenchConfig {
  batchClients: number;
  batchSize: number;
  batchWarmupCalls: number;
  batchCalls: number;
  duplicateFraction: number;
  singleClients: number;
  singleWarmupSeconds: number;
  singleSeconds: number;
  rawConnections: number;
  loneEvents: number;
}

export function ingestConfigFromEnv(): IngestBenchConfig {
  return {
    batchClients: intFromEnv('BENCH_BATCH_CLIENTS', 4),
    batchSize: intFromEnv('BENCH_BATCH_SIZE', 1000),
    batchWarmupCalls: intFromEnv('BENCH_BATCH_WARMUP_CALLS', 8),
    batchCalls: intFromEnv('BENCH_BATCH_CALLS', 200),
    duplicateFraction: 0.1,
    singleClients: intFromEnv('BENCH_SINGLE_CLIENTS', 64),
    singleWarmupSeconds: intFromEnv('BENCH_SINGLE_WARMUP_SECONDS', 2),
    singleSeconds: intFromEnv('BENCH_SINGLE_SECONDS', 10),
    rawConnections: intFromEnv('BENCH_RAW_CONNECTIONS', 4),
    loneEvents: intFromEnv('BENCH_LONE_EVENTS', 200),
  };
}

// ---------------------------------------------------------------------------------------
// Events

const USAGE_TYPES = ['api_call', 'tokens', 'storage_gb', 'download'] as const;
const ROUTES = ['/v1/search', '/v1/items', '/v1/items/:id', '/v1/export', '/v1/users/:id/profile', '/v1/orders'];
const METHODS = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];

interface BenchEvent {
  licenseId: string;
  usageType: string;
  quantity: number | string;
  occurredAt: string;
  idempotencyKey: string;
  userId: string;
  route: string;
  method: string;
  statusCode: number;
  durationMs: number;
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

/** A realistic event: recent (within the last hour), a few usage types, mixed number/decimal-string quantities. */
function makeEvent(licenseId: string, idempotencyKey: string, now = Date.now()): BenchEvent {
  const usageType = pick(USAGE_TYPES);
  const quantity =
    usageType === 'tokens'
      ? String(Math.floor(Math.random() * 4000) + 1)
      : usageType === 'storage_gb'
        ? (Math.random() * 10).toFixed(3)
        : usageType === 'download'
          ? Math.floor(Math.random() * 5) + 1
          : 1;
  const r = Math.random();
  return {
    licenseId,
    usageType,
    quantity,
    occurredAt: new Date(now - Math.floor(Math.random() * 3_600_000)).toISOString(),
    idempotencyKey,
    userId: `user-${Math.floor(Math.random() * 500)}`,
    route: pick(ROUTES),
    method: pick(METHODS),
    statusCode: r < 0.9 ? 200 : r < 0.97 ? 404 : 500,
    durationMs: Math.floor(Math.random() * 400) + 2,
  };
}

/** `count` distinct items of `pool`, at random. */
function pickDistinct<T>(pool: readonly T[], count: number): T[] {
  const chosen = new Set<number>();
  while (chosen.size < Math.min(count, pool.length)) chosen.add(Math.floor(Math.random() * pool.length));
  return [...chosen].map((i) => pool[i]!);
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** Keeps the first few messages and the count, so one broken phase cannot flood the report. */
class ErrorLog {
  count = 0;
  readonly first: string[] = [];
  add(message: string): void {
    this.count += 1;
    if (this.first.length < 10) this.first.push(message);
  }
  get messages(): string[] {
    return this.count > this.first.length ? [...this.first, `… and ${this.count - this.first.length} more`] : [...this.first];
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

async function countStored(databaseUrl: string, tenantId: string, keyPrefix: string): Promise<{ events: number; keys: number }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const like = `${keyPrefix.replace(/[\\%_]/g, '\\$&')}%`;
    const events = await client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM usage_events WHERE tenant_id = $1 AND idempotency_key LIKE $2',
      [tenantId, like],
    );
    const keys = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys WHERE tenant_id = $1 AND key LIKE $2', [
      tenantId,
      like,
    ]);
    return { events: events.rows[0]!.n, keys: keys.rows[0]!.n };
  } finally {
    await client.end();
  }
}

interface BatchResult {
  accepted: number;
  duplicates: number;
  rejected: { index: number; code: string; message: string }[];
}

// ---------------------------------------------------------------------------------------
// (a) batch ingest

async function batchPhase(ctx: BenchContext, tenant: BenchTenant, cfg: IngestBenchConfig): Promise<PhaseReport> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.batchClients });
  const url = `${ctx.server.baseUrl}/api/trpc/usage.trackEvents`;
  const headers = { authorization: `Bearer ${tenant.ownerKey}`, 'content-type': 'application/json' };
  const keyPrefix = `a-${ctx.runId}-`;
  const errors = new ErrorLog();
  // Events whose call has been answered: repeats are drawn from these only, so each one is
  // certain to come back as a duplicate.
  const sentPool: BenchEvent[] = [];
  let seq = 0;
  const totals = { calls: 0, sent: 0, accepted: 0, duplicates: 0, bodyBytes: 0 };
  const measured = { calls: 0, sent: 0, accepted: 0, duplicates: 0 };
  const latencies: number[] = [];

  async function oneCall(record: boolean): Promise<void> {
    const repeatCount = Math.round(cfg.batchSize * cfg.duplicateFraction);
    const repeats = sentPool.length >= repeatCount * 2 ? pickDistinct(sentPool, repeatCount) : [];
    const now = Date.now();
    const fresh = Array.from({ length: cfg.batchSize - repeats.length }, () => makeEvent(tenant.licenseId, `${keyPrefix}${seq++}`, now));
    const events = shuffle([...repeats, ...fresh]);
    const body = JSON.stringify({ events });
    const started = performance.now();
    let res;
    try {
      res = await httpRequest(url, { method: 'POST', headers, body, agent });
    } catch (error) {
      errors.add(`usage.trackEvents: ${describe(error)}`);
      return;
    }
    const ms = performance.now() - started;
    if (res.status !== 200) {
      errors.add(`usage.trackEvents: HTTP ${res.status}: ${res.body.slice(0, 300)}`);
      return;
    }
    const data = (JSON.parse(res.body) as { result: { data: BatchResult } }).result.data;
    if (data.rejected.length) errors.add(`${data.rejected.length} events rejected, first: ${JSON.stringify(data.rejected[0])}`);
    if (data.accepted + data.duplicates !== events.length) {
      errors.add(`accepted ${data.accepted} + duplicates ${data.duplicates} != sent ${events.length}`);
    }
    if (data.duplicates !== repeats.length) errors.add(`expected ${repeats.length} duplicates, got ${data.duplicates}`);
    for (const e of fresh) sentPool.push(e);
    totals.calls += 1;
    totals.sent += events.length;
    totals.accepted += data.accepted;
    totals.duplicates += data.duplicates;
    totals.bodyBytes += Buffer.byteLength(body);
    if (record) {
      latencies.push(ms);
      measured.calls += 1;
      measured.sent += events.length;
      measured.accepted += data.accepted;
      measured.duplicates += data.duplicates;
    }
  }

  async function drive(calls: number, record: boolean): Promise<void> {
    let started = 0;
    await Promise.all(
      Array.from({ length: cfg.batchClients }, async () => {
        while (started < calls && errors.count < 50) {
          started += 1;
          await oneCall(record);
        }
      }),
    );
  }

  await drive(cfg.batchWarmupCalls, false);
  const { resources } = await measurePhase(ctx.server, () => drive(cfg.batchCalls, true));
  agent.destroy();

  const stored = await countStored(ctx.databaseUrl, tenant.tenantId, keyPrefix);
  if (stored.events !== totals.accepted) errors.add(`stored ${stored.events} events, but ${totals.accepted} were accepted`);
  if (stored.keys !== totals.accepted) errors.add(`stored ${stored.keys} idempotency keys, but ${totals.accepted} events were accepted`);

  return {
    name: '(a) batch ingest',
    resources,
    errors: errors.messages,
    metrics: {
      ...measured,
      eventsPerSecond: round(measured.sent / resources.wallSeconds, 0),
      acceptedPlusDuplicatesEqualsSent: measured.accepted + measured.duplicates === measured.sent,
      duplicateShare: round(measured.duplicates / Math.max(1, measured.sent), 3),
      callLatency: summarizeLatencies(latencies),
      meanBodyBytes: Math.round(totals.bodyBytes / Math.max(1, totals.calls)),
      includingWarmup: { ...totals, storedEvents: stored.events, storedKeys: stored.keys },
    },
  };
}

// ---------------------------------------------------------------------------------------
// (b) single-event ingest

async function singlePhase(ctx: BenchContext, tenant: BenchTenant, cfg: IngestBenchConfig): Promise<PhaseReport> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.singleClients });
  const url = `${ctx.server.baseUrl}/api/trpc/usage.trackEvent`;
  const headers = { authorization: `Bearer ${tenant.ownerKey}`, 'content-type': 'application/json' };
  const keyPrefix = `b-${ctx.runId}-`;
  const errors = new ErrorLog();
  let seq = 0;
  let accepted = 0;
  const latencies: number[] = [];

  async function drive(seconds: number, record: boolean): Promise<number> {
    const deadline = performance.now() + seconds * 1000;
    let done = 0;
    await Promise.all(
      Array.from({ length: cfg.singleClients }, async () => {
        while (performance.now() < deadline && errors.count < 200) {
          const body = JSON.stringify(makeEvent(tenant.licenseId, `${keyPrefix}${seq++}`));
          const started = performance.now();
          let res;
          try {
            res = await httpRequest(url, { method: 'POST', headers, body, agent });
          } catch (error) {
            errors.add(`usage.trackEvent: ${describe(error)}`);
            continue;
          }
          const ms = performance.now() - started;
          if (res.status !== 200) {
            errors.add(`usage.trackEvent: HTTP ${res.status}: ${res.body.slice(0, 300)}`);
            continue;
          }
          const data = (JSON.parse(res.body) as { result: { data: { eventId: string; duplicate: boolean } } }).result.data;
          if (data.duplicate) errors.add(`a fresh idempotency key came back as a duplicate (${data.eventId})`);
          else accepted += 1;
          done += 1;
          if (record) latencies.push(ms);
        }
      }),
    );
    return done;
  }

  await drive(cfg.singleWarmupSeconds, false);
  const { result: requests, resources } = await measurePhase(ctx.server, () => drive(cfg.singleSeconds, true));
  agent.destroy();

  const stored = await countStored(ctx.databaseUrl, tenant.tenantId, keyPrefix);
  if (stored.events !== accepted) errors.add(`stored ${stored.events} events, but ${accepted} were accepted`);

  return {
    name: '(b) single ingest',
    resources,
    errors: errors.messages,
    metrics: {
      clients: cfg.singleClients,
      requests,
      requestsPerSecond: round(requests / resources.wallSeconds, 0),
      latency: summarizeLatencies(latencies),
      includingWarmup: { accepted, storedEvents: stored.events },
    },
  };
}

// ---------------------------------------------------------------------------------------
// (c) raw pg ceiling

/** The API's insert without the idempotency-key claim: the same columns, one statement per batch. */
const RAW_INSERT_SQL = `
INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, idempotency_key,
  payload_hash, platform, device_type, user_id, route, method, status_code, duration_ms, sdk_version,
  ip_address, properties, country)
SELECT * FROM unnest(
  $1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::numeric[], $6::timestamptz[], $7::text[], $8::text[],
  $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int[], $15::int[], $16::text[],
  $17::text[], $18::jsonb[], $19::text[])
ON CONFLICT DO NOTHING`;

interface RawRow {
  id: string;
  event: BenchEvent;
  payloadHash: string;
}

function rawParams(tenantId: string, rows: RawRow[]): unknown[] {
  const col = <T>(f: (r: RawRow) => T) => rows.map(f);
  const nulls = rows.map(() => null);
  return [
    col((r) => r.id),
    col(() => tenantId),
    col((r) => r.event.licenseId),
    col((r) => r.event.usageType),
    col((r) => String(r.event.quantity)),
    col((r) => r.event.occurredAt),
    col((r) => r.event.idempotencyKey),
    col((r) => r.payloadHash),
    nulls,
    nulls,
    col((r) => r.event.userId),
    col((r) => r.event.route),
    col((r) => r.event.method),
    col((r) => r.event.statusCode),
    col((r) => r.event.durationMs),
    nulls,
    col(() => '127.0.0.1'),
    col(() => '{}'),
    nulls, // country: loopback has none
  ];
}

async function rawPhase(ctx: BenchContext, tenant: BenchTenant, cfg: IngestBenchConfig): Promise<PhaseReport> {
  const keyPrefix = `c-${ctx.runId}-`;
  const errors = new ErrorLog();
  let seq = 0;
  const newRow = (now: number): RawRow => ({
    id: randomUUID(),
    event: makeEvent(tenant.licenseId, `${keyPrefix}${seq++}`, now),
    payloadHash: randomBytes(32).toString('hex'),
  });

  // Rows are generated before the clock starts: this phase measures PostgreSQL. Repeats are
  // drawn, at dispatch, only from rows already committed (as in (a)): repeating a row another
  // connection is still inserting would make the two statements wait on each other.
  const now = Date.now();
  const committed: RawRow[] = [];
  const warmup = Array.from({ length: cfg.batchWarmupCalls }, () => Array.from({ length: cfg.batchSize }, () => newRow(now)));
  const repeatCount = Math.round(cfg.batchSize * cfg.duplicateFraction);
  const freshBatches = Array.from({ length: cfg.batchCalls }, () => Array.from({ length: cfg.batchSize - repeatCount }, () => newRow(now)));

  const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: cfg.rawConnections });
  const latencies: number[] = [];
  let offered = 0;
  let stored = 0;
  let expectedStored = 0;
  try {
    // Warm-up: connections open, the repeats' originals in place.
    await Promise.all(warmup.map((rows) => pool.query(RAW_INSERT_SQL, rawParams(tenant.tenantId, rows))));
    for (const rows of warmup) committed.push(...rows);
    const { resources } = await measurePhase(ctx.server, async () => {
      let next = 0;
      await Promise.all(
        Array.from({ length: cfg.rawConnections }, async () => {
          while (next < freshBatches.length) {
            const fresh = freshBatches[next++]!;
            const repeats = pickDistinct(committed, repeatCount);
            const rows = shuffle([...repeats, ...fresh]);
            const params = rawParams(tenant.tenantId, rows);
            const started = performance.now();
            try {
              const res = await pool.query(RAW_INSERT_SQL, params);
              latencies.push(performance.now() - started);
              offered += rows.length;
              stored += res.rowCount ?? 0;
              expectedStored += fresh.length;
              committed.push(...fresh);
            } catch (error) {
              errors.add(`raw insert: ${describe(error)}`);
            }
          }
        }),
      );
    });
    if (stored !== expectedStored) errors.add(`raw insert stored ${stored} rows, expected ${expectedStored} (the rest are repeats)`);
    return {
      name: '(c) raw pg ceiling',
      resources,
      errors: errors.messages,
      metrics: {
        connections: cfg.rawConnections,
        statements: latencies.length,
        rowsOffered: offered,
        rowsStored: stored,
        rowsPerSecond: round(offered / resources.wallSeconds, 0),
        statementLatency: summarizeLatencies(latencies),
      },
    };
  } finally {
    await pool.end();
  }
}

// ---------------------------------------------------------------------------------------
// (d) a lone event

async function lonePhase(ctx: BenchContext, tenant: BenchTenant, cfg: IngestBenchConfig): Promise<PhaseReport> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const url = `${ctx.server.baseUrl}/api/trpc/usage.trackEvent`;
  const headers = { authorization: `Bearer ${tenant.ownerKey}`, 'content-type': 'application/json' };
  const keyPrefix = `d-${ctx.runId}-`;
  const errors = new ErrorLog();
  const latencies: number[] = [];
  const send = async (i: number, record: boolean) => {
    const body = JSON.stringify(makeEvent(tenant.licenseId, `${keyPrefix}${i}`));
    const started = performance.now();
    const res = await httpRequest(url, { method: 'POST', headers, body, agent });
    if (res.status !== 200) errors.add(`usage.trackEvent: HTTP ${res.status}: ${res.body.slice(0, 300)}`);
    else if (record) latencies.push(performance.now() - started);
  };
  for (let i = 0; i < 20; i++) await send(i, false);
  const { resources } = await measurePhase(ctx.server, async () => {
    for (let i = 20; i < 20 + cfg.loneEvents; i++) await send(i, true);
  });
  agent.destroy();
  const stored = await countStored(ctx.databaseUrl, tenant.tenantId, keyPrefix);
  if (stored.events !== 20 + cfg.loneEvents - errors.count) errors.add(`stored ${stored.events} events, but ${20 + cfg.loneEvents - errors.count} were accepted`);
  return { name: '(d) lone events', resources, errors: errors.messages, metrics: { events: cfg.loneEvents, latency: summarizeLatencies(latencies) } };
}

// ---------------------------------------------------------------------------------------

async function guarded(name: string, run: () => Promise<PhaseReport>): Promise<PhaseReport> {
  try {
    return await run();
  } catch (error) {
    return {
      name,
      resources: { wallSeconds: 0, window: { fromUs: 0, toUs: 0 }, peakRssMb: 0, peakTreeRssMb: 0, rssSamples: 0, apiCores: 0, postgresCores: 0, benchClientCores: 0, machineBusyPct: 0 },
      metrics: {},
      errors: [`phase failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`],
    };
  }
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);
const latencyOf = (p: PhaseReport | undefined, key: string) => (p?.metrics[key] as { p50Ms: number; p99Ms: number } | undefined) ?? { p50Ms: Number.NaN, p99Ms: Number.NaN };

export async function runIngestBench(ctx: BenchContext, cfg: IngestBenchConfig = ingestConfigFromEnv()): Promise<BenchReport> {
  const tenant = await createTenantWithLicense(ctx.server, `bench-ingest-${ctx.runId}`, 'enterprise');
  const idleRssMb = round(((await rssOf(ctx.server.pid)) ?? Number.NaN) / 1048576);
  const only = (process.env.BENCH_ONLY ?? 'a,b,c,d').split(',').map((s) => s.trim());

  const batch = only.includes('a') ? await guarded('(a) batch ingest', () => batchPhase(ctx, tenant, cfg)) : undefined;
  const single = only.includes('b') ? await guarded('(b) single ingest', () => singlePhase(ctx, tenant, cfg)) : undefined;
  const raw = only.includes('c') ? await guarded('(c) raw pg ceiling', () => rawPhase(ctx, tenant, cfg)) : undefined;
  const lone = only.includes('d') ? await guarded('(d) lone events', () => lonePhase(ctx, tenant, cfg)) : undefined;
  const phases = [batch, single, raw, lone].filter((p): p is PhaseReport => p !== undefined);

  const batchRate = num(batch?.metrics.eventsPerSecond);
  const rawRate = num(raw?.metrics.rowsPerSecond);
  const batchLatency = latencyOf(batch, 'callLatency');
  const singleLatency = latencyOf(single, 'latency');
  const peakAll = Math.max(...phases.map((p) => p.resources.peakRssMb));

  const figures: Figure[] = [];
  if (batch) {
    figures.push(
      { what: '(a) batch ingest, 1,000-event calls, 10% dup', value: batchRate, unit: 'events/s', target: { value: 20_000, better: 'higher' }, baseline: raw ? `(c) raw pg: ${Math.round(rawRate).toLocaleString('en-US')} rows/s` : '' },
      { what: '(a) ÷ (c) raw pg unnest insert', value: (100 * batchRate) / rawRate, unit: '%', digits: 1, target: { value: 35, better: 'higher' } },
      { what: '(a) per-call latency p50', value: batchLatency.p50Ms, unit: 'ms', baseline: `p99 ${round(batchLatency.p99Ms, 0)} ms` },
      { what: '(a) API peak RSS under batch ingest', value: batch.resources.peakRssMb, unit: 'MB', target: { value: 300, better: 'lower' }, baseline: `idle after start ${Math.round(idleRssMb)} MB; peak over all phases ${Math.round(peakAll)} MB` },
    );
  }
  if (single) {
    figures.push(
      { what: `(b) single-event ingest, ${cfg.singleClients} clients`, value: num(single.metrics.requestsPerSecond), unit: 'req/s', target: { value: 3_000, better: 'higher' }, baseline: 'peers: Lago ~1,000 events/s single REST' },
      { what: '(b) latency p99', value: singleLatency.p99Ms, unit: 'ms', digits: 1, target: { value: 50, better: 'lower' }, baseline: `p50 ${round(singleLatency.p50Ms, 1)} ms` },
    );
  }
  if (raw) {
    figures.push({ what: '(c) raw pg unnest insert, 4 connections', value: rawRate, unit: 'rows/s', baseline: 'DESIGN.md: ~95,000 rows/s measured earlier' });
  }
  if (lone) {
    const interval = /(?:^|\s)INGEST_FLUSH_INTERVAL_MS=(\d+)/.exec(process.env.BENCH_API_ENV ?? '')?.[1] ?? '5 (default)';
    const { p50Ms, p99Ms } = latencyOf(lone, 'latency');
    figures.push({ what: '(d) a lone event, one client, p99', value: p99Ms, unit: 'ms', digits: 1, baseline: `p50 ${round(p50Ms, 1)} ms; INGEST_FLUSH_INTERVAL_MS ${interval}: a lone event must not wait for it` });
  }
  return { name: 'ingest', figures, phases, config: { ...cfg, phases: only }, extra: { idleRssMb } };
}
