import { setTimeout as sleep } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import type { Redis } from '../../lib/redis';
import type { Logger } from '../../lib/logger';

/** Holds the requests to one Stripe account to its rate: `take` before each request. */
export interface AccountRateGate {
  take(): Promise<void>;
  /** Stripe answered 429 with Retry-After: the whole account waits that long. */
  pause(ms: number): void;
}

/** Burst of a twentieth of a second's requests (at least one), for both gates. */
export const burstOf = (rps: number) => Math.max(1, Math.floor(rps / 20));

/** One process's gate: spaces its own requests to `rps` per second; knows nothing of other processes. */
export class LocalRateGate implements AccountRateGate {
  private next = 0;
  private readonly interval: number;
  private readonly burst: number;
  constructor(rps: number) {
    this.interval = 1000 / rps;
    this.burst = burstOf(rps) * this.interval;
  }
  async take(): Promise<void> {
    const now = performance.now();
    const at = Math.max(this.next, now - this.burst);
    this.next = at + this.interval;
    if (at > now) await sleep(at - now);
  }
  pause(ms: number): void {
    this.next = Math.max(this.next, performance.now() + ms);
  }
}

/**
 * A token bucket per account in Redis: every worker process sending to the account takes from
 * the same bucket, so N senders together stay within the account's rate (a per-process gate
 * lets N of them send N times the rate). Redis's clock (TIME) is the one clock all senders
 * share. Answers 0 when a token was taken, else the milliseconds to wait before asking again.
 * KEYS[1] the bucket; ARGV rate per second, burst.
 */
export const TAKE_TOKEN_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'paused_until')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
local paused = tonumber(state[3]) or 0
if now < paused then return paused - now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('PEXPIRE', KEYS[1], 60000)
return wait
`;

/** Every sender of the account waits until Redis's now + ARGV[1] ms (a later pause wins). */
export const PAUSE_BUCKET_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilMs = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
if untilMs > current then redis.call('HSET', KEYS[1], 'paused_until', tostring(untilMs)) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + 60000)
return 1
`;

const SHAS = new Map([TAKE_TOKEN_LUA, PAUSE_BUCKET_LUA].map((s) => [s, createHash('sha1').update(s).digest('hex')]));

async function runScript(redis: Redis, script: string, key: string, args: (string | number)[]): Promise<unknown> {
  try {
    return await redis.evalsha(SHAS.get(script)!, 1, key, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error;
    return redis.eval(script, 1, key, ...args);
  }
}

/** The bucket of one Stripe connection; hash-tagged so a Redis Cluster keeps it on one slot. */
export const bucketKey = (prefix: string, connectionId: string) => `${prefix}billing:stripe-rate:{${connectionId}}`;

/**
 * The account's shared bucket. Should Redis fail, this sender falls back to its own local gate
 * (logged once) rather than stop billing: the outbox's 429 handling still holds the account.
 */
export class RedisRateGate implements AccountRateGate {
  private readonly local: LocalRateGate;
  private failed = false;
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly rps: number,
    private readonly logger?: Logger,
  ) {
    this.local = new LocalRateGate(rps);
  }

  async take(): Promise<void> {
    for (;;) {
      if (this.failed) return this.local.take();
      let wait: number;
      try {
        wait = await this.tryTake();
      } catch (err) {
        this.fallBack(err);
        continue;
      }
      if (!(wait > 0)) return;
      await sleep(wait);
    }
  }

  /** Takes a token if the bucket has one (answers 0), else answers the milliseconds to wait. */
  async tryTake(): Promise<number> {
    return Number(await runScript(this.redis, TAKE_TOKEN_LUA, this.key, [this.rps, burstOf(this.rps)]));
  }

  pause(ms: number): void {
    this.local.pause(ms);
    if (this.failed) return;
    runScript(this.redis, PAUSE_BUCKET_LUA, this.key, [Math.max(0, Math.ceil(ms))]).catch((err: unknown) => this.fallBack(err));
  }

  private fallBack(err: unknown): void {
    if (!this.failed) this.logger?.warn({ err, key: this.key }, 'Stripe rate bucket in Redis unavailable: this sender paces itself alone');
    this.failed = true;
  }
}
