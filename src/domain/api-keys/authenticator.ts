import type { Db } from '../../lib/db';
import type { Redis } from '../../lib/redis';
import type { ApiKeyRole } from '../../generated/prisma/client';
import { API_KEY_PATTERN, hashApiKey, publicPrefix } from './key-material';

export interface Principal {
  keyId: string;
  tenantId: string | null;
  role: ApiKeyRole;
  prefix: string;
}

export type AuthOutcome =
  | { ok: true; principal: Principal }
  | { ok: false; reason: 'missing' | 'malformed' | 'unknown' | 'revoked'; prefix?: string };

interface CachedKey {
  principal: Principal | null;
  revoked: boolean;
  expiresAt: number;
}

const REVOCATION_CHANNEL = 'api-keys:revoked';

/**
 * Resolves bearer keys to principals. Lookups are cached in memory; a revocation clears the
 * local cache at once and is broadcast to other processes over Redis pub/sub. Usage
 * (lastUsedAt, request count, SDK version) is counted in memory and written in one UPDATE
 * every few seconds instead of a write per request.
 */
/** Told of every revocation, so the key fails at once in this process and every other one. */
export interface KeyRevocations {
  revoked(keyId: string): Promise<void>;
}

export class ApiKeyAuthenticator implements KeyRevocations {
  private readonly cache = new Map<string, CachedKey>();
  private readonly usage = new Map<string, { count: number; lastUsedAt: Date; sdkVersion?: string }>();
  private flushTimer?: NodeJS.Timeout;
  private subscriber?: Redis;

  constructor(
    private readonly db: Db,
    private readonly options: { cacheTtlMs: number; usageFlushMs: number; redis?: Redis; channelPrefix?: string },
  ) {}

  async start(): Promise<void> {
    this.flushTimer = setInterval(() => void this.flushUsage().catch(() => undefined), this.options.usageFlushMs);
    this.flushTimer.unref();
    if (this.options.redis) {
      this.subscriber = this.options.redis.duplicate();
      this.subscriber.on('error', () => undefined);
      this.subscriber.on('message', (_channel: string, keyId: string) => this.forget(keyId));
      await this.subscriber.subscribe(this.channel);
    }
  }

  async stop(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flushUsage().catch(() => undefined);
    if (this.subscriber) await this.subscriber.quit().catch(() => undefined);
  }

  private get channel(): string {
    return `${this.options.channelPrefix ?? 'tally:'}${REVOCATION_CHANNEL}`;
  }

  async authenticate(authorization: string | undefined, userAgentSdk?: string): Promise<AuthOutcome> {
    if (!authorization) return { ok: false, reason: 'missing' };
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    const presented = match?.[1];
    if (!presented || !API_KEY_PATTERN.test(presented)) return { ok: false, reason: 'malformed' };
    const prefix = publicPrefix(presented);
    const hash = hashApiKey(presented);
    let entry = this.cache.get(hash);
    if (!entry || entry.expiresAt <= Date.now()) {
      const row = await this.db.apiKey.findUnique({
        where: { keyHash: hash },
        select: { id: true, tenantId: true, role: true, prefix: true, revokedAt: true },
      });
      entry = {
        principal: row ? { keyId: row.id, tenantId: row.tenantId, role: row.role, prefix: row.prefix } : null,
        revoked: Boolean(row?.revokedAt),
        expiresAt: Date.now() + this.options.cacheTtlMs,
      };
      if (this.options.cacheTtlMs > 0) this.cache.set(hash, entry);
    }
    if (!entry.principal) return { ok: false, reason: 'unknown', prefix };
    if (entry.revoked) return { ok: false, reason: 'revoked', prefix };
    this.recordUse(entry.principal.keyId, userAgentSdk);
    return { ok: true, principal: entry.principal };
  }

  /** Called after a revocation: drop it here, and tell the other processes. */
  async revoked(keyId: string): Promise<void> {
    this.forget(keyId);
    await this.options.redis?.publish(this.channel, keyId).catch(() => undefined);
  }

  private forget(keyId: string): void {
    for (const [hash, entry] of this.cache) if (entry.principal?.keyId === keyId) this.cache.delete(hash);
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
