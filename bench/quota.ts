/**
 * Quota enforcement benchmark (DESIGN.md section 7, "quota enforcement"): single-event
 * `usage.trackEvent` calls from 64 concurrent keep-alive clients against two licenses of one
 * tenant in the same run, one without any limit (baseline: no Redis call) and one with a hard
 * daily threshold high enough never to refuse (every call runs the Lua check-and-increment).
 * The two alternate in rounds (A B A B …) so that drift in the machine's load hits both alike.
 * Figures: p99 added by enforcement, throughput with enforcement as a share of without, and
 * the CPU time enforcement adds per event (API process + redis-server, from /proc, over every
 * measured round: the 64-client p99 difference is queueing at saturation, CPU is what it costs).
 * A second measure of the latency added, free of queueing: one client alternating the two
 * licenses call by call (A B A B …), so both see the same moment of the machine.
 * Checks: every call answered 200, the limited calls carry RateLimit-* headers, and PostgreSQL
 * holds exactly the accepted events of each license.
 */
import http from 'node:http';
import pg from 'pg';
import {
  type BenchContext,
  type BenchReport,
  type Figure,
  type PhaseReport,
  type PhaseResources,
  createTenantWithLicense,
  httpRequest,
  intFromEnv,
  measurePhase,
  round,
  summarizeLatencies,
  trpcMutation,
} from './lib';

export interface QuotaBenchConfig {
  serialPairs: number;
  clients: number;
  warmupSeconds: number;
  roundSeconds: number;
  rounds: number;
}

export function quotaConfigFromEnv(): QuotaBenchConfig {
  return {
    serialPairs: intFromEnv('BENCH_QUOTA_SERIAL_PAIRS', 2000),
    clients: intFromEnv('BENCH_QUOTA_CLIENTS', 64),
    warmupSeconds: intFromEnv('BENCH_QUOTA_WARMUP_SECONDS', 2),
    roundSeconds: intFromEnv('BENCH_QUOTA_ROUND_SECONDS', 4),
    rounds: intFromEnv('BENCH_QUOTA_ROUNDS', 4),
  };
}

interface Variant {
  name: 'unenforced' | 'enforced';
  licenseId: string;
  latencies: number[];
  requests: number;
  seconds: number;
  accepted: number;
  withHeaders: number;
  errors: string[];
  resources: PhaseResources[];
}

async function drive(
  ctx: BenchContext,
  ownerKey: string,
  variant: Variant,
  cfg: QuotaBenchConfig,
  seconds: number,
  record: boolean,
): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.clients });
  const url = `${ctx.server.baseUrl}/api/trpc/usage.trackEvent`;
  const headers = { authorization: `Bearer ${ownerKey}`, 'content-type': 'application/json' };
  const body = JSON.stringify({ licenseId: variant.licenseId, usageType: 'api_call', quantity: 1 });
  const deadline = performance.now() + seconds * 1000;
  const run = async () => {
    await Promise.all(
      Array.from({ length: cfg.clients }, async () => {
        while (performance.now() < deadline && variant.errors.length < 50) {
          const started = performance.now();
          const res = await httpRequest(url, { method: 'POST', headers, body, agent }).catch((e: unknown) => {
            variant.errors.push(String(e));
            return null;
          });
          if (!res) continue;
          const ms = performance.now() - started;
          if (res.status !== 200) {
            variant.errors.push(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
            continue;
          }
          variant.accepted += 1;
          if (res.headers['ratelimit-limit'] !== undefined) variant.withHeaders += 1;
          if (record) {
            variant.latencies.push(ms);
            variant.requests += 1;
          }
        }
      }),
    );
  };
  if (record) {
    const started = performance.now();
    const { resources } = await measurePhase(ctx.server, run);
    variant.seconds += (performance.now() - started) / 1000;
    variant.resources.push(resources);
  } else {
    await run();
  }
  agent.destroy();
}

/** One client, calls alternating between the two licenses: latency without queueing. */
async function serialPairs(ctx: BenchContext, ownerKey: string, variants: Variant[], pairs: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const url = `${ctx.server.baseUrl}/api/trpc/usage.trackEvent`;
  const headers = { authorization: `Bearer ${ownerKey}`, 'content-type': 'application/json' };
  const samples = variants.map(() => [] as number[]);
  const { resources } = await measurePhase(ctx.server, async () => {
    for (let i = 0; i < pairs; i++) {
      for (const [j, v] of (i % 2 === 0 ? variants : [...variants].reverse()).entries()) {
        const index = i % 2 === 0 ? j : variants.length - 1 - j;
        const started = performance.now();
        const res = await httpRequest(url, { method: 'POST', headers, body: JSON.stringify({ licenseId: v.licenseId, usageType: 'api_call' }), agent });
        if (res.status !== 200) v.errors.push(`serial: HTTP ${res.status}: ${res.body.slice(0, 200)}`);
        else v.accepted += 1;
        if (v.name === 'enforced' && res.headers['ratelimit-limit'] !== undefined) v.withHeaders += 1;
        samples[index]!.push(performance.now() - started);
      }
    }
  });
  agent.destroy();
  return { resources, latency: samples.map((s) => summarizeLatencies(s)) };
}

async function storedFor(databaseUrl: string, licenseId: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_events WHERE license_id = $1', [licenseId]);
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

export async function runQuotaBench(ctx: BenchContext, cfg: QuotaBenchConfig): Promise<BenchReport> {
  const tenant = await createTenantWithLicense(ctx.server, `quota-${ctx.runId}`, 'enterprise');
  const limited = await trpcMutation<{ id: string }>(ctx.server.baseUrl, 'licenses.create', { name: 'limited', plan: 'enterprise' }, tenant.ownerKey);
  await trpcMutation(
    ctx.server.baseUrl,
    'thresholds.create',
    { licenseId: limited.id, usageType: 'api_call', periodType: 'daily', limitQuantity: '1000000000000' },
    tenant.ownerKey,
  );
  const blank = (name: Variant['name'], licenseId: string): Variant => ({
    name, licenseId, latencies: [], requests: 0, seconds: 0, accepted: 0, withHeaders: 0, errors: [], resources: [],
  });
  const variants = [blank('unenforced', tenant.licenseId), blank('enforced', limited.id)];

  for (const v of variants) await drive(ctx, tenant.ownerKey, v, cfg, cfg.warmupSeconds, false);
  const serial = await serialPairs(ctx, tenant.ownerKey, variants, cfg.serialPairs);
  for (let round = 0; round < cfg.rounds; round++) {
    for (const v of round % 2 === 0 ? variants : [...variants].reverse()) await drive(ctx, tenant.ownerKey, v, cfg, cfg.roundSeconds, true);
  }

  const phases: PhaseReport[] = [];
  for (const v of variants) {
    const stored = await storedFor(ctx.databaseUrl, v.licenseId);
    if (stored !== v.accepted) v.errors.push(`stored ${stored} events, but ${v.accepted} were accepted`);
    if (v.name === 'enforced' && v.withHeaders !== v.accepted) v.errors.push(`${v.accepted - v.withHeaders} enforced answers without RateLimit-* headers`);
    if (v.name === 'unenforced' && v.withHeaders !== 0) v.errors.push('unenforced answers carried RateLimit-* headers');
    const last = v.resources.at(-1)!;
    const cpuSeconds = (pick: (r: PhaseResources) => number | undefined) => v.resources.reduce((sum, r) => sum + (pick(r) ?? 0), 0);
    phases.push({
      name: `${v.name} single ingest`,
      resources: { ...last, wallSeconds: round(v.seconds, 3), apiCores: round(v.resources.reduce((s, r) => s + r.apiCores, 0) / v.resources.length, 2) },
      errors: v.errors,
      metrics: {
        requests: v.requests,
        requestsPerSecond: round(v.requests / v.seconds, 0),
        latency: summarizeLatencies(v.latencies),
        storedEvents: stored,
        // CPU time per answered call over every measured round, from /proc: the API process, and every redis-server
        apiCpuUsPerRequest: round((1e6 * cpuSeconds((r) => r.apiCpuSeconds)) / Math.max(1, v.requests), 1),
        redisCpuUsPerRequest: round((1e6 * cpuSeconds((r) => r.redisCpuSeconds)) / Math.max(1, v.requests), 1),
      },
    });
  }

  phases.push({
    name: 'serial A/B, 1 client',
    resources: serial.resources,
    errors: [],
    metrics: { pairs: cfg.serialPairs, unenforced: serial.latency[0], enforced: serial.latency[1] },
  });
  const [sBase, sEnforced] = serial.latency as [ReturnType<typeof summarizeLatencies>, ReturnType<typeof summarizeLatencies>];
  const [base, enforced] = phases as [PhaseReport, PhaseReport];
  const lat = (p: PhaseReport) => p.metrics.latency as ReturnType<typeof summarizeLatencies>;
  const rps = (p: PhaseReport) => p.metrics.requestsPerSecond as number;
  const apiUs = (p: PhaseReport) => p.metrics.apiCpuUsPerRequest as number;
  const redisUs = (p: PhaseReport) => p.metrics.redisCpuUsPerRequest as number;
  const figures: Figure[] = [
    { what: `single-event ingest, ${cfg.clients} clients, no limit`, value: rps(base), unit: 'req/s', baseline: `p50 ${round(lat(base).p50Ms, 2)} ms, p99 ${round(lat(base).p99Ms, 2)} ms` },
    { what: 'same, with a hard limit (Redis Lua check)', value: rps(enforced), unit: 'req/s', baseline: `p50 ${round(lat(enforced).p50Ms, 2)} ms, p99 ${round(lat(enforced).p99Ms, 2)} ms` },
    { what: 'quota enforcement: p99 added, 64 clients', value: round(lat(enforced).p99Ms - lat(base).p99Ms, 2), unit: 'ms', digits: 2, baseline: `p50 added ${round(lat(enforced).p50Ms - lat(base).p50Ms, 2)} ms; queueing at saturation: judged by CPU per event below` },
    {
      what: 'quota enforcement: p99 added, 1 client A/B',
      value: round(sEnforced.p99Ms - sBase.p99Ms, 2),
      unit: 'ms',
      digits: 2,
      target: { value: 0.5, better: 'lower' },
      baseline: `p99 ${round(sBase.p99Ms, 2)} → ${round(sEnforced.p99Ms, 2)} ms; p50 ${round(sBase.p50Ms, 2)} → ${round(sEnforced.p50Ms, 2)} ms`,
    },
    { what: 'quota enforcement: throughput vs unenforced', value: round((100 * rps(enforced)) / rps(base), 1), unit: '%', digits: 1, target: { value: 90, better: 'higher' }, baseline: `${rps(enforced)} vs ${rps(base)} req/s, same run` },
    {
      what: 'quota enforcement: API + Redis CPU added per event',
      value: round(apiUs(enforced) + redisUs(enforced) - apiUs(base) - redisUs(base), 1),
      unit: 'µs',
      digits: 1,
      target: { value: 20, better: 'lower' },
      baseline: `API ${apiUs(base)} → ${apiUs(enforced)} µs, Redis ${redisUs(base)} → ${redisUs(enforced)} µs per event (/proc, ${cfg.clients} clients)`,
    },
  ];
  return { name: 'quota', figures, phases, config: { ...cfg } };
}
