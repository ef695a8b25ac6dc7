import type { Db } from '../../lib/db';
import { duplicateRedis, type Redis } from '../../lib/redis';
import type { ApiKeyRole } from '../../generated/prisma/client';
import type { Environment } from '../environments/environment';
import { LruMap } from '../../lib/bounded-cache';
import type { RefusalAudit } from '../audit/refusal-audit';
import { API_KEY_PATTERN, hashApiKey, publicPrefix } from './key-material';
import type { FailedAuthThrottle, KeyRateLimiter, LimitState } from './throttles';

export interface Principal {
  keyId: string;
  tenantId: string | null;
  role: ApiKeyRole;
  /** live or test (tk_live_ / tk_test_): the key reaches only licenses of this environment. */
  environment: Environment;
  prefix: string;
  /** Calls allowed per hour (null: no limit of its own). */
  rateLimitPerHour: number | null;
}

export type AuthOutcome =
  | { ok: true; principal: Principal }
  | { ok: false; reason: 'missing' | 'malformed' | 'unknown' | 'revoked'; prefix?: string }
  /** Too many failures from this address or with this key prefix: 429 until the window ends. */
  | { ok: false; reason: 'throttled'; prefix?: string; limit: LimitState }
  /** A valid key past its rateLimitPerHour: 429. */
  | { ok: false; reason: 'rate_limited'; prefix: string; limit: LimitState };

/** Who is knocking, for the failed-authentication throttle and the audit of refusals. */
export interface AuthClient {
  address?: string | null;
  userAgent?: string | null;
  /** The procedure or route asked for. */
  target?: string;
  /** The SDK named in the User-Agent, recorded on the key. */
  sdkVersion?: string;
}

type Refusal = 'unknown' | 'revoked';

const REVOCATION_CHANNEL = 'api-keys:revoked';

export interface AuthenticatorOptions {
  cacheTtlMs: number;
  usageFlushMs: number;
  redis?: Redis;
  channelPrefix?: string;
  /** Accepted keys held in memory (least recently used go first). */
  maxKeys?: number;
  /** Refused keys held apart, so a stream of random keys cannot push out the good ones. */
  maxRefused?: number;
  throttle?: FailedAuthThrottle;
  rateLimiter?: KeyRateLimiter;
  refusals?: RefusalAudit;
  /** Counts refusals by reason (a closed set), for /metrics. */
  onRefusal?: (reason: Exclude<AuthOutcome, { ok: true }>['reason']) => void;
}

/**
 * Resolves bearer keys to principals. Lookups are cached in memory, in two bounded caches
 * (accepted and refused keys); a revocation clears the local cache at once and is broadcast to
 * other processes over Redis pub/sub. Usage (lastUsedAt, request count, SDK version) is counted
 * in memory and written in one UPDATE every few seconds instead of a write per request.
 *
 * Failed authentication is counted per client address and key prefix (FailedAuthThrottle);
 * past the limit a key this process has not accepted lately is refused with `throttled` before
 * any database lookup. A key accepted lately skips that check: it is no guess, and a client
 * sharing an address with a misconfigured one keeps working. Refusals are audited in aggregate
 * (RefusalAudit). Keys with a rateLimitPerHour pay one Redis call per request; others none.
 */
/** Told of every revocation, so the key fails at once in this process and every other one. */
export interface KeyRevocations {
  revoked(keyId: string): Promise<void>;
}

export class ApiKeyAuthenticator implements KeyRevocations {
  private readonly accepted: LruMap<string, { principal: Principal; expiresAt: number }>;
  private readonly refused: LruMap<string, { reason: Refusal; expiresAt: number }>;
  private readonly usage = new Map<string, { count: number; lastUsedAt: Date; sdkVersion?: string }>();
  private flushTimer?: NodeJS.Timeout;
  private subscriber?: Redis;

  constructor(
    private readonly db: Db,
    private readonly options: AuthenticatorOptions,
  ) {
    this.accepted = new LruMap(options.maxKeys ?? 10_000);
    this.refused = new LruMap(options.maxRefused ?? 1_000);
  }

  async start(): Promise<void> {
    this.flushTimer = setInterval(() => void this.flush(), this.options.usageFlushMs);
    this.flushTimer.unref();
    if (this.options.redis) {
      // Plain pub/sub: on a Redis Cluster a PUBLISH reaches the subscribers of every node, and
      // the cluster client subscribes again on another node when its node goes away.
      this.subscriber = duplicateRedis(this.options.redis);
      // it reconnects by itself; without a listener ioredis prints every failed attempt
      this.subscriber.on('error', () => undefined);
      this.subscriber.on('message', (_channel: string, keyId: string) => this.forget(keyId));
      await this.subscriber.subscribe(this.channel);
    }
  }

  async stop(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flush();
    if (this.subscriber) await this.subscriber.quit().catch(() => undefined);
  }

  /** Key usage and the counts of refused authentication, written now. */
  async flush(): Promise<void> {
    await Promise.all([this.flushUsage().catch(() => undefined), this.options.refusals?.flush()]);
  }

  /** How many keys each cache holds. */
  cacheSizes(): { accepted: number; refused: number } {
    return { accepted: this.accepted.size, refused: this.refused.size };
  }

  private get channel(): string {
    return `${this.options.channelPrefix ?? 'tally:'}${REVOCATION_CHANNEL}`;
  }

  async authenticate(authorization: string | undefined, client: AuthClient = {}): Promise<AuthOutcome> {
    if (!authorization) return this.refuse('missing', undefined, client);
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    const presented = match?.[1];
    if (!presented || !API_KEY_PATTERN.test(presented)) return this.refuse('malformed', undefined, client);
    const prefix = publicPrefix(presented);
    const hash = hashApiKey(presented);
    const now = Date.now();
    const known = this.accepted.get(hash);
    if (known && known.expiresAt > now) return this.admit(known.principal, client);
    if (!known) {
      const refused = this.refused.get(hash);
      if (refused && refused.expiresAt > now) return this.refuse(refused.reason, prefix, client);
      // a key not accepted lately: the throttle decides before the database is asked
      const blocked = await this.options.throttle?.check(client.address ?? null, prefix);
      if (blocked) return this.throttled(blocked, prefix, client);
    }
    const row = await this.db.apiKey.findUnique({
      where: { keyHash: hash },
      select: { id: true, tenantId: true, role: true, environment: true, prefix: true, revokedAt: true, rateLimitPerHour: true },
    });
    const expiresAt = Date.now() + this.options.cacheTtlMs;
    if (!row || row.revokedAt) {
      const reason: Refusal = row ? 'revoked' : 'unknown';
      this.accepted.delete(hash);
      if (this.options.cacheTtlMs > 0) this.refused.set(hash, { reason, expiresAt });
      return this.refuse(reason, prefix, client);
    }
    const principal: Principal = {
      keyId: row.id,
      tenantId: row.tenantId,
      role: row.role,
      environment: row.environment,
      prefix: row.prefix,
      rateLimitPerHour: row.rateLimitPerHour,
    };
    this.refused.delete(hash);
    if (this.options.cacheTtlMs > 0) this.accepted.set(hash, { principal, expiresAt });
    return this.admit(principal, client);
  }

  private async admit(principal: Principal, client: AuthClient): Promise<AuthOutcome> {
    if (principal.rateLimitPerHour !== null && this.options.rateLimiter) {
      const state = await this.options.rateLimiter.take(principal.keyId, principal.rateLimitPerHour);
      if (!state.allowed) {
        this.options.onRefusal?.('rate_limited');
        return { ok: false, reason: 'rate_limited', prefix: principal.prefix, limit: { limit: state.limit, remaining: 0, resetSeconds: state.resetSeconds } };
      }
    }
    this.recordUse(principal.keyId, client.sdkVersion);
    return { ok: true, principal };
  }

  /** Counts the failure; an address or prefix already at its limit is told so instead. */
  private async refuse(reason: 'missing' | 'malformed' | Refusal, prefix: string | undefined, client: AuthClient): Promise<AuthOutcome> {
    const blocked = await this.options.throttle?.fail(client.address ?? null, prefix);
    if (blocked) return this.throttled(blocked, prefix, client);
    this.options.refusals?.record({ reason, address: client.address ?? null, prefix, target: client.target, userAgent: client.userAgent });
    this.options.onRefusal?.(reason);
    return { ok: false, reason, prefix };
  }

  private throttled(limit: LimitState, prefix: string | undefined, client: AuthClient): AuthOutcome {
    this.options.refusals?.record({ reason: 'throttled', address: client.address ?? null, prefix, target: client.target, userAgent: client.userAgent });
    this.options.onRefusal?.('throttled');
    return { ok: false, reason: 'throttled', prefix, limit };
  }

  /** Called after a revocation: drop it here, and tell the other processes. */
  async revoked(keyId: string): Promise<void> {
    this.forget(keyId);
    await this.options.redis?.publish(this.channel, keyId).catch(() => undefined);
  }

  private forget(keyId: string): void {
    for (const [hash, entry] of [...this.accepted.entries()]) if (entry.principal.keyId === keyId) this.accepted.delete(hash);
  }

  /** The last use of a key counted in this process and not written to the database yet. */
  pendingLastUse(keyId: string): Date | undefined {
    return this.usage.get(keyId)?.lastUsedAt;
  }

  private recordUse(keyId: string, sdkVersion: string | undefined): void {
    const current = this.usage.get(keyId);
    if (current) {
      current.count += 1;
      current.lastUsedAt = new Date();
      if (sdkVersion) current.sdkVersion = sdkVersion;
    } else {
      this.usage.set(keyId, { count: 1, lastUsedAt: new Date(), sdkVersion });
    }
  }

  async flushUsage(): Promise<void> {
    if (this.usage.size === 0) return;
    const batch = [...this.usage.entries()];
    this.usage.clear();
    await this.db.$executeRaw`
      UPDATE api_keys AS k
         SET request_count = k.request_count + u.count,
             last_used_at = GREATEST(coalesce(k.last_used_at, u.last_used_at), u.last_used_at),
             sdk_version = coalesce(u.sdk_version, k.sdk_version)
        FROM unnest(${batch.map(([id]) => id)}::uuid[], ${batch.map(([, u]) => u.count)}::int[],
                    ${batch.map(([, u]) => u.lastUsedAt.toISOString())}::timestamptz[],
                    ${batch.map(([, u]) => u.sdkVersion ?? null)}::text[])
             AS u(id, count, last_used_at, sdk_version)
       WHERE k.id = u.id`;
  }
}
