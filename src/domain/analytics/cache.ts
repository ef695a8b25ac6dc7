import { createHash } from 'node:crypto';
import type { Redis } from '../../lib/redis';
import type { Metrics } from '../../lib/metrics';

/**
 * Analytics answers cached in Redis for `ttlSeconds`. A key names the tenant's generation
 * (and a global one): invalidating a tenant bumps its generation, so every answer computed
 * before is never read again, including one being computed while the bump happens (it is
 * written under the old generation). Rollup changes (recalculation, late events) invalidate.
 */
export class AnalyticsCache {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly metrics?: Pick<Metrics, 'analyticsCache'>,
  ) {}

  private generationKey(tenantId: string | null): string {
    return `${this.prefix}analytics:gen:${tenantId ?? '*'}`;
  }

  async read<T>(tenantId: string, view: string, input: unknown, compute: () => Promise<T>): Promise<T> {
    if (this.ttlSeconds === 0) return compute();
    let key: string | null;
    try {
      const [global, tenant] = await this.redis.mget(this.generationKey(null), this.generationKey(tenantId));
      const digest = createHash('sha256').update(`${view}\n${JSON.stringify(input)}`).digest('base64url');
      key = `${this.prefix}analytics:${tenantId}:${global ?? 0}:${tenant ?? 0}:${digest}`;
      const cached = await this.redis.get(key);
      if (cached !== null) {
        this.metrics?.analyticsCache.inc({ view, result: 'hit' });
        return JSON.parse(cached) as T;
      }
    } catch {
      key = null; // Redis down: answer from PostgreSQL
    }
    this.metrics?.analyticsCache.inc({ view, result: 'miss' });
    const value = await compute();
    if (key) await this.redis.set(key, JSON.stringify(value), 'EX', this.ttlSeconds).catch(() => undefined);
    return value;
  }

  /** Drops the cached answers of these tenants (null: every tenant). */
  async invalidate(tenantIds: Iterable<string> | null): Promise<void> {
    const keys = tenantIds === null ? [this.generationKey(null)] : [...new Set(tenantIds)].map((id) => this.generationKey(id));
    if (keys.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const key of keys) pipeline.incr(key);
    await pipeline.exec();
  }
}
