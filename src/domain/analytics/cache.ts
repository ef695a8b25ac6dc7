import { createHash } from 'node:crypto';
import { isCluster, type Redis } from '../../lib/redis';
import type { Metrics } from '../../lib/metrics';
import { rememberJson } from '../../lib/json-text';

/**
 * Analytics answers cached in Redis for `ttlSeconds`. Every answer is stored with the tenant's
 * generation (and a global one) it was computed under, and read back in the same round trip
 * as the current generations: invalidating a tenant bumps its generation, so every answer
 * computed before is never served again, including one being computed while the bump happens
 * (it is stored under the old generation). Rollup changes (recalculation, late events) and
 * license changes invalidate.
 */
/** What operations that change what analytics would answer call (AnalyticsCache implements it). */
export interface AnalyticsInvalidator {
  /** Drops the cached answers of these tenants (null: every tenant). */
  invalidate(tenantIds: Iterable<string> | null): Promise<void>;
}

/**
 * What a question asked once under a stamp leaves in its key: not its answer (a year of days is
 * ~30 kB) but this marker, so the answer is stored when the question comes again within the
 * TTL. Questions asked once (a dashboard's ad hoc ranges) then cost Redis a few bytes each,
 * not their answers; repeated ones are served from the third time on. Never the start of a JSON text.
 */
const SEEN = '~';

export class AnalyticsCache implements AnalyticsInvalidator {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly metrics?: Pick<Metrics, 'analyticsCache'>,
  ) {}

  /**
   * A tenant's generation and cached answers share the hash tag {tenantId}, so on a Redis Cluster
   * they are read in one MGET; the global generation lives in a slot of its own, read beside it.
   */
  private generationKey(tenantId: string | null): string {
    return tenantId === null ? `${this.prefix}analytics:gen:*` : `${this.prefix}analytics:{${tenantId}}:gen`;
  }

  /**
   * The cached answer, or `compute`'s, which is cached. `compute` gets the generation stamp
   * it runs under (null when caching is off or Redis is down), for caches of its own that
   * must end with it (FinalDayCache), and a `keepUncached` to call when its answer must not
   * be cached (read from a replica that may not hold the writes behind that generation).
   */
  async read<T>(
    tenantId: string,
    view: string,
    input: unknown,
    compute: (generation: string | null, keepUncached: () => void) => Promise<T>,
  ): Promise<T> {
    let store = true;
    const keepUncached = () => {
      store = false;
    };
    if (this.ttlSeconds === 0) return compute(null, keepUncached);
    const digest = createHash('sha256').update(`${view}\n${JSON.stringify(input)}`).digest('base64url');
    const key = `${this.prefix}analytics:{${tenantId}}:${digest}`;
    let stamp: string | null;
    let seen = false;
    try {
      // Not one atomic read, and it need not be: an answer is served only under the stamp it
      // was stored with, so a bump between the two reads makes it a miss, or the read counts
      // as having happened before the bump.
      // One MGET on a single Redis (one round trip); on a cluster, one per slot.
      const [global, tenant, cached] = isCluster(this.redis)
        ? await Promise.all([this.redis.get(this.generationKey(null)), this.redis.mget(this.generationKey(tenantId), key)]).then(([g, rest]) => [g, ...rest])
        : await this.redis.mget(this.generationKey(null), this.generationKey(tenantId), key);
      stamp = `${global ?? 0}:${tenant ?? 0}\n`;
      seen = cached === stamp + SEEN;
      if (!seen && cached?.startsWith(stamp)) {
        this.metrics?.analyticsCache.inc({ view, result: 'hit' });
        const text = cached.slice(stamp.length);
        const value = JSON.parse(text) as T;
        rememberJson(value, text);
        return value;
      }
    } catch {
      stamp = null; // Redis down: answer from PostgreSQL
    }
    this.metrics?.analyticsCache.inc({ view, result: 'miss' });
    const value = await compute(stamp, keepUncached);
    if (stamp !== null && store) {
      // Not awaited: the answer does not wait for Redis, and a later read on this connection comes after the write.
      if (seen) {
        const text = JSON.stringify(value);
        rememberJson(value, text);
        void this.redis.set(key, stamp + text, 'EX', this.ttlSeconds).catch(() => undefined);
      } else {
        void this.redis.set(key, stamp + SEEN, 'EX', this.ttlSeconds).catch(() => undefined);
      }
    }
    return value;
  }

  /** Drops the cached answers of these tenants (null: every tenant). */
  async invalidate(tenantIds: Iterable<string> | null): Promise<void> {
    const keys = tenantIds === null ? [this.generationKey(null)] : [...new Set(tenantIds)].map((id) => this.generationKey(id));
    // One INCR per key (not one pipeline): on a cluster the tenants' keys are in different slots.
    await Promise.all(keys.map((key) => this.redis.incr(key)));
  }
}
