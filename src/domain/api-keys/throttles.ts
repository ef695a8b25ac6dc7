import type { Redis } from '../../lib/redis';
import type { Logger } from '../../lib/logger';
import { runScript } from '../quotas/counter-scripts';

/** What a 429 tells the client: the limit, what is left, and seconds until the window ends. */
export interface LimitState {
  limit: number;
  remaining: number;
  resetSeconds: number;
}

/**
 * Each KEYS[i] counts failures in a window that starts with its first failure (PEXPIRE on the
 * first INCR, in the same script, so a counter never outlives its window). ARGV: the limit of
 * each key, then the window in ms, then 1 to count a failure or 0 to only check. Answers
 * {0} when under every limit (after counting), or {i, pttl} for the first key at its limit;
 * a blocked attempt is not counted, so the window still ends when it said it would.
 */
const FAILURES_LUA = `
local n = #KEYS
for i = 1, n do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], ARGV[n + 1])
      ttl = tonumber(ARGV[n + 1])
    end
    return {i, ttl}
  end
end
if ARGV[n + 2] == '1' then
  for i = 1, n do
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[n + 1]) end
  end
end
return {0}
`;

/** One call counted in a fixed window that starts with the key's first call: {count, pttl}. */
const HOURLY_LUA = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
`;

class Timeout extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Timeout('Redis did not answer in time')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export interface ThrottleOptions {
  keyPrefix: string;
  /** Failures allowed per client address in a window; the next attempt is refused. */
  addressLimit: number;
  /** Failures allowed per presented key prefix (tk_live_ + 8 characters) in a window. */
  prefixLimit: number;
  windowSeconds: number;
  redisTimeoutMs: number;
}

/**
 * Counts failed authentication per client address and per presented key prefix in Redis, so
 * every process sees the same counts. When Redis cannot answer, authentication goes on
 * unthrottled (logged): an outage of the counters must not lock every client out.
 */
export class FailedAuthThrottle {
  private lastWarning = 0;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger | undefined,
    readonly options: ThrottleOptions,
  ) {}

  private keys(address: string | null, prefix: string | undefined): { keys: string[]; limits: number[] } {
    const keys: string[] = [];
    const limits: number[] = [];
    // One script checks and counts both keys together, so on a Redis Cluster they share the
    // slot of the hash tag {auth-failures}: small, short-lived keys touched only by failed and
    // not-yet-accepted keys.
    if (address) {
      keys.push(`${this.options.keyPrefix}{auth-failures}:address:${address}`);
      limits.push(this.options.addressLimit);
    }
    if (prefix) {
      keys.push(`${this.options.keyPrefix}{auth-failures}:prefix:${prefix}`);
      limits.push(this.options.prefixLimit);
    }
    return { keys, limits };
  }

  /** null when the address and prefix may still try; otherwise the limit they are at. */
  check(address: string | null, prefix: string | undefined): Promise<LimitState | null> {
    return this.run(address, prefix, false);
  }

  /** Counts a failure, unless the address or prefix is already at its limit (then says which). */
  fail(address: string | null, prefix: string | undefined): Promise<LimitState | null> {
    return this.run(address, prefix, true);
  }

  private async run(address: string | null, prefix: string | undefined, count: boolean): Promise<LimitState | null> {
    const { keys, limits } = this.keys(address, prefix);
    if (keys.length === 0) return null;
    try {
      const reply = (await withTimeout(
        runScript(this.redis, FAILURES_LUA, keys, [...limits, this.options.windowSeconds * 1000, count ? 1 : 0]),
        this.options.redisTimeoutMs,
      )) as number[];
      const at = reply[0]!;
      if (at === 0) return null;
      return { limit: limits[at - 1]!, remaining: 0, resetSeconds: Math.max(1, Math.ceil(reply[1]! / 1000)) };
    } catch (err) {
      this.warn(err, 'failed-authentication counters unavailable in Redis; not throttling');
      return null;
    }
  }

  private warn(err: unknown, message: string): void {
    if (Date.now() - this.lastWarning < 60_000) return;
    this.lastWarning = Date.now();
    this.logger?.warn({ err }, message);
  }
}

/** Counts one call under `key` in a fixed window that starts with its first call: [count, pttl]. */
function countInWindow(redis: Redis, key: string, windowMs: number, timeoutMs: number): Promise<[number, number]> {
  return withTimeout(runScript(redis, HOURLY_LUA, [key], [windowMs]), timeoutMs) as Promise<[number, number]>;
}

/**
 * `rateLimitPerHour` of a key: calls counted in Redis in a fixed one-hour window that starts
 * with the key's first call, one atomic script per call. Only keys with a limit pay for it.
 * When Redis cannot answer, the call is let through (logged), as a limit of calls per hour is
 * a courtesy to the service, not a quota that invoices depend on.
 */
export class KeyRateLimiter {
  private lastWarning = 0;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger | undefined,
    private readonly options: { keyPrefix: string; redisTimeoutMs: number; windowSeconds?: number },
  ) {}

  /** Counts one call; `allowed` is false past the limit. */
  async take(keyId: string, limit: number): Promise<LimitState & { allowed: boolean }> {
    const windowMs = (this.options.windowSeconds ?? 3600) * 1000;
    try {
      const [count, ttl] = await countInWindow(this.redis, `${this.options.keyPrefix}ratelimit:key:${keyId}`, windowMs, this.options.redisTimeoutMs);
      return { allowed: count <= limit, limit, remaining: Math.max(0, limit - count), resetSeconds: Math.max(1, Math.ceil(ttl / 1000)) };
    } catch (err) {
      if (Date.now() - this.lastWarning >= 60_000) {
        this.lastWarning = Date.now();
        this.logger?.warn({ err }, 'key rate-limit counters unavailable in Redis; not limiting');
      }
      return { allowed: true, limit, remaining: limit, resetSeconds: Math.ceil(windowMs / 1000) };
    }
  }
}

/**
 * Attempts per client address at an unauthenticated door (signup.register), counted in Redis
 * like a key's rate limit: `limit` per fixed window that starts with the address's first
 * attempt, shared by every process. Unlike a key's limit it fails closed: while Redis cannot
 * answer, attempts are refused (`unavailable`), since an unthrottled door that creates tenants
 * is worse than a sign-up that has to wait.
 */
export class AddressRateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger | undefined,
    private readonly options: { keyPrefix: string; redisTimeoutMs: number; namespace: string; limit: number; windowSeconds: number },
  ) {}

  /** Counts one attempt from `address` (null: every caller without one shares a counter). */
  async take(address: string | null): Promise<(LimitState & { allowed: boolean }) | { unavailable: true }> {
    const { limit, windowSeconds } = this.options;
    try {
      const key = `${this.options.keyPrefix}${this.options.namespace}:address:${address ?? 'unknown'}`;
      const [count, ttl] = await countInWindow(this.redis, key, windowSeconds * 1000, this.options.redisTimeoutMs);
      return { allowed: count <= limit, limit, remaining: Math.max(0, limit - count), resetSeconds: Math.max(1, Math.ceil(ttl / 1000)) };
    } catch (err) {
      this.logger?.warn({ err, namespace: this.options.namespace }, 'address rate-limit counters unavailable in Redis; refusing');
      return { unavailable: true };
    }
  }
}
