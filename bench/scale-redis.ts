/**
 * Single Redis vs Redis Cluster (`npm run bench -- scale-redis`): the run's API (on the single
 * Redis) and a second API started the same way on a 6-node Redis Cluster (3 masters + 3
 * replicas) that this benchmark starts and stops, on the same database. Each measure runs on
 * both, alternating in rounds (single, cluster, single, cluster, …) so drift in the machine's
 * load hits both alike:
 * - batch ingest: `usage.trackEvents` of BENCH_SCALE_BATCH events from BENCH_SCALE_CLIENTS clients;
 * - single-event ingest: `usage.trackEvent` from the same clients, on a license without limits;
 * - quota check: the same on a license with a hard daily limit that never refuses, so every
 *   call runs the counters' Lua script (on the cluster: on the master of the license's slot).
 * On 2 cores shared with PostgreSQL and six redis-servers, the point is the overhead of the
 * cluster client and its extra hops, not a speedup. Checks: every call answered 2xx, and
 * PostgreSQL holds exactly the accepted events.
 */
import http from 'node:http';
import pg from 'pg';
import { RedisClusterServer } from '../tests/helpers/redis-cluster';
import {
  type BenchContext,
  type BenchReport,
  type Figure,
  type PhaseReport,
  type StartedServer,
  createTenantWithLicense,
  httpRequest,
  intFromEnv,
  measurePhase,
  round,
  startServer,
  stopServer,
  summarizeLatencies,
  trpcMutation,
} from './lib';

export interface ScaleRedisConfig {
  clients: number;
  batch: number;
  roundSeconds: number;
  rounds: number;
}

export function scaleRedisConfigFromEnv(): ScaleRedisConfig {
  return {
    clients: intFromEnv('BENCH_SCALE_CLIENTS', 32),
    batch: intFromEnv('BENCH_SCALE_BATCH', 500),
    roundSeconds: intFromEnv('BENCH_SCALE_ROUND_SECONDS', 4),
    rounds: intFromEnv('BENCH_SCALE_ROUNDS', 3),
  };
}

type Measure = 'batch ingest' | 'single-event ingest' | 'quota check';
const MEASURES: Measure[] = ['batch ingest', 'single-event ingest', 'quota check'];

interface Tally {
  events: number;
  requests: number;
  seconds: number;
  latencies: number[];
  errors: string[];
}

/** `clients` keep-alive clients calling `body()` for `seconds`; each call counts `eventsPerCall` events. */
async function drive(server: StartedServer, key: string, procedure: string, body: () => string, eventsPerCall: number, clients: number, seconds: number, into: Tally) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const until = Date.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < until) {
        const t = performance.now();
        const res = await httpRequest(`${server.baseUrl}/api/trpc/${procedure}`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: body(), agent }).catch(
          (err: unknown) => ({ status: 0, body: String(err) }),
        );
        into.latencies.push(performance.now() - t);
        if (res.status !== 200) {
          if (into.errors.length < 5) into.errors.push(`${procedure}: HTTP ${res.status}: ${res.body.slice(0, 200)}`);
          continue;
        }
        into.requests += 1;
        into.events += eventsPerCall;
      }
    }),
  );
  into.seconds += (performance.now() - started) / 1000;
  agent.destroy();
}

export async function runScaleRedisBench(ctx: BenchContext, cfg: ScaleRedisConfig): Promise<BenchReport> {
  const cluster = await RedisClusterServer.start();
  let clusterServer: StartedServer | undefined;
  try {
    clusterServer = await startServer({ databaseUrl: ctx.databaseUrl, env: { REDIS_CLUSTER_NODES: cluster.nodesSpec } });
    const servers = { single: ctx.server, cluster: clusterServer };
    const tenant = await createTenantWithLicense(ctx.server, `scale-${ctx.runId}`, 'enterprise');
    const limited = await trpcMutation<{ id: string }>(ctx.server.baseUrl, 'licenses.create', { name: 'limited', plan: 'enterprise' }, tenant.ownerKey);
    await trpcMutation(
      ctx.server.baseUrl,
      'thresholds.create',
      { licenseId: limited.id, usageType: 'api_call', periodType: 'daily', limitQuantity: 1_000_000_000, allowOverage: false },
      tenant.ownerKey,
    );
    let seq = 0;
    const event = (licenseId: string) => ({ licenseId, usageType: 'api_call', idempotencyKey: `s-${ctx.runId}-${seq++}`, userId: `u${seq % 100}` });
    const bodies: Record<Measure, { procedure: string; body: () => string; events: number }> = {
      'batch ingest': { procedure: 'usage.trackEvents', body: () => JSON.stringify({ events: Array.from({ length: cfg.batch }, () => event(tenant.licenseId)) }), events: cfg.batch },
      'single-event ingest': { procedure: 'usage.trackEvent', body: () => JSON.stringify(event(tenant.licenseId)), events: 1 },
      'quota check': { procedure: 'usage.trackEvent', body: () => JSON.stringify(event(limited.id)), events: 1 },
    };
    const tallies = new Map<string, Tally>();
    const phases: PhaseReport[] = [];
    for (const measure of MEASURES) {
      // a short warm-up of each API (JIT, connections, prepared statements)
      for (const server of Object.values(servers)) {
        const b = bodies[measure];
        await drive(server, tenant.ownerKey, b.procedure, b.body, b.events, cfg.clients, 1, { events: 0, requests: 0, seconds: 0, latencies: [], errors: [] });
      }
      for (let r = 0; r < cfg.rounds; r++) {
        for (const [variant, server] of Object.entries(servers)) {
          const name = `${measure}, ${variant} Redis`;
          const tally = tallies.get(name) ?? { events: 0, requests: 0, seconds: 0, latencies: [], errors: [] };
          tallies.set(name, tally);
          const b = bodies[measure];
          const { resources } = await measurePhase(server, () => drive(server, tenant.ownerKey, b.procedure, b.body, b.events, cfg.clients, cfg.roundSeconds, tally));
          if (r === cfg.rounds - 1) phases.push({ name, resources, metrics: {}, errors: tally.errors });
        }
      }
    }

    const client = new pg.Client({ connectionString: ctx.databaseUrl });
    await client.connect();
    const stored = Number((await client.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_events WHERE tenant_id = $1', [tenant.tenantId])).rows[0]!.n);
    await client.end();
    const accepted = [...tallies.values()].reduce((s, t) => s + t.events, 0);
    const checks: string[] = [];
    // warm-up events are stored too: at least every accepted one, and no more than were sent
    if (stored < accepted || stored > seq) checks.push(`stored ${stored} events; accepted in measured rounds ${accepted}, sent ${seq}`);

    const figures: Figure[] = [];
    const rows: Record<string, unknown> = {};
    for (const measure of MEASURES) {
      const single = tallies.get(`${measure}, single Redis`)!;
      const onCluster = tallies.get(`${measure}, cluster Redis`)!;
      const rate = (t: Tally) => t.events / t.seconds;
      const p99 = (t: Tally) => summarizeLatencies(t.latencies).p99Ms;
      const unit = measure === 'batch ingest' ? 'events/s' : 'req/s';
      const info = (t: Tally) => `${round(rate(t), 0)} ${unit}, p99 ${round(p99(t), 1)} ms`;
      figures.push({ what: `${measure}, ${cfg.clients} clients, single Redis`, value: rate(single), unit, baseline: `p99 ${round(p99(single), 1)} ms` });
      figures.push({
        what: `${measure}, ${cfg.clients} clients, Redis Cluster`,
        value: rate(onCluster),
        unit,
        baseline: `p99 ${round(p99(onCluster), 1)} ms; ${round((100 * rate(onCluster)) / rate(single), 1)}% of single Redis (${info(single)})`,
      });
      rows[measure] = {
        single: { rate: round(rate(single), 1), p99Ms: round(p99(single), 2), requests: single.requests },
        cluster: { rate: round(rate(onCluster), 1), p99Ms: round(p99(onCluster), 2), requests: onCluster.requests },
      };
    }
    if (checks.length) phases.push({ name: 'checks', resources: phases[0]!.resources, metrics: {}, errors: checks });
    return { name: 'scale-redis', figures, phases, config: { ...cfg, clusterNodes: cluster.ports.length }, extra: { rows, stored, accepted } };
  } finally {
    if (clusterServer) await stopServer(clusterServer);
    await cluster.stop();
  }
}
