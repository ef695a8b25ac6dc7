import type pg from 'pg';
import type { Redis } from '../../lib/redis';
import { AppError, isUnavailableError } from '../../lib/errors';
import type { Logger } from '../../lib/logger';
import { type Period, periodContaining } from '../periods';
import { licenseUsage } from '../usage-reader/license-usage';
import { RELEASE_LUA, RESERVE_LUA, runScript } from './counter-scripts';
import {
  type EffectiveLimit,
  type LicenseLimits,
  capOf,
  levelMicro,
  limitsFor,
} from './limits';
import { LicenseCache, type LicenseInvalidation, licenseRefusal } from '../licenses/license-cache';
import { LEASE_IDLE_MS, LeaseBook, type LeaseRequest, type LeaseReturn } from './leases';
import { floorMicro, formatMicro } from '../../lib/micro';
import { DAY_MS } from '../../lib/time';
import type { Environment } from '../environments/environment';

export type QuotaFailMode = 'closed' | 'open';

export interface QuotaOptions {
  /** Prefix of every Redis key (the service's REDIS_KEY_PREFIX). */
  keyPrefix: string;
  /** When Redis is down: closed = decide from PostgreSQL (503 if that fails too); open = admit. */
  failMode: QuotaFailMode;
  limitsCacheMs: number;
  redisTimeoutMs: number;
  /** The largest quota lease, in events of the size that asks for it; 0 = none (every event goes to Redis). Default 256. */
  leaseMaxEvents?: number;
}

/** One counter: a license's usage of one type in one period. */
interface Counter {
  key: string;
  tenantId: string;
  environment: Environment;
  licenseId: string;
  usageType: string;
  period: Period;
  limit: EffectiveLimit;
  /** null for a limit that allows overage: counted, never refused. */
  capMicro: bigint | null;
  /** capMicro as decimal text ("0" without a hard cap): every answer's rate-limit headers carry it. */
  capText: string;
  /** limit × (1 + grace%) in millionths, whether or not it is enforced. */
  graceCapMicro: bigint;
  /** The usage at which each alert level is reached, in millionths. */
  levelMicros: { level: number; at: bigint }[];
}

export interface QuotaEvent {
  licenseId: string;
  usageType: string;
  quantity: string;
  occurredAt: Date;
}

/** What a client is told about the limit closest to refusing it (rate-limit headers). */
export interface QuotaState {
  usageType: string;
  periodType: string;
  limit: string;
  used: string;
  remaining: string;
  resetAt: Date;
}

export interface Reservation {
  amount: bigint;
  counters: { counter: Counter; before: bigint }[];
  viaRedis: boolean;
}

export type ReserveOutcome =
  | { admitted: true; reservation: Reservation | null; state: QuotaState | null }
  | { admitted: false; state: QuotaState };

export interface LevelCrossing {
  tenantId: string;
  /** The license's environment: its alert goes to webhook endpoints of this environment only. */
  environment: Environment;
  licenseId: string;
  usageType: string;
  period: Period;
  limit: EffectiveLimit;
  level: number;
  used: string;
}

export interface OverageCrossing {
  tenantId: string;
  environment: Environment;
  licenseId: string;
  usageType: string;
  period: Period;
  limit: EffectiveLimit;
  used: string;
}

export interface Crossings {
  levels: LevelCrossing[];
  overages: OverageCrossing[];
}

function stateOf(counter: Counter, used: bigint): QuotaState {
  const cap = counter.capMicro ?? 0n;
  return {
    usageType: counter.usageType,
    periodType: counter.period.type,
    limit: counter.capText,
    used: formatMicro(used),
    remaining: formatMicro(used >= cap ? 0n : cap - used),
    resetAt: counter.period.end,
  };
}

/** Of the hard counters and their usage, the one with the least room left. */
function tightest(entries: { counter: Counter; used: bigint }[]): QuotaState | null {
  let best: { counter: Counter; used: bigint } | null = null;
  for (const e of entries) {
    if (e.counter.capMicro === null) continue;
    if (!best || e.counter.capMicro - e.used < best.counter.capMicro! - best.used) best = e;
  }
  return best ? stateOf(best.counter, best.used) : null;
}

class Timeout extends Error {}

/** A script call failed after some of its items had been taken from a lease: those stand. */
class PartlyDecided extends Error {
  constructor(
    readonly failure: unknown,
    readonly outcomes: (ReserveOutcome | undefined)[],
  ) {
    super('quota reservations partly decided');
  }
}

interface DecisionItem {
  amount: bigint;
  counters: Counter[];
}

interface QueuedDecision {
  items: DecisionItem[];
  /** Leases to ask for along with these items (counters no lease could take them from). */
  leases: LeaseRequest<Counter>[];
  resolve: (outcomes: ReserveOutcome[]) => void;
  reject: (error: unknown) => void;
}

/** Reservations of one license waiting for the call on its way, and their deadline. */
interface WaitingBatch {
  entries: QueuedDecision[];
  deadline: NodeJS.Timeout;
}

/**
 * Real-time quota enforcement. Redis holds one counter per license, usage type and period
 * (millionths of a unit); one Lua script checks and increments every counter a call touches,
 * so concurrent calls can never admit past a cap. PostgreSQL stays the record: a missing
 * counter is rebuilt from it (plus what this process has reserved and not yet written), and
 * when Redis is unreachable the decision is taken from PostgreSQL (fail-closed by default).
 */
/** The per-process cache of a license's limits; operations that change limits drop the license's entry. */
export type QuotaLimitsCache = LicenseInvalidation;

export class QuotaEnforcer implements QuotaLimitsCache {
  /** Licenses with their limits: the same cache (and entry) the writer reads. */
  readonly licenses: LicenseCache;
  /** Counters worked out per license limits and usage type, reused while their periods last. */
  private readonly countersCache = new WeakMap<LicenseLimits, Map<string, Counter[]>>();
  /** Reserved in Redis, not yet written or given back: a rebuild must count them. */
  private readonly inflight = new Map<string, bigint>();
  private readonly rebuilding = new Map<string, Promise<void>>();
  /** Without Redis, decisions for one license are taken one at a time in this process. */
  private readonly fallbackChains = new Map<string, Promise<unknown>>();
  /** Reservations waiting for their license's script call on its way to Redis. */
  private readonly queued = new Map<string, WaitingBatch>();
  /** Licenses with a script call on its way to Redis. */
  private readonly sending = new Set<string>();
  /**
   * Counters whose value in Redis may lack what this process admitted from PostgreSQL while
   * Redis could not answer (or may hold a script that timed out and ran later): they are
   * deleted, and so rebuilt from PostgreSQL, before Redis decides on them again. A Redis that
   * restarts empty loses them anyway; a cluster master's replica, promoted when it dies, and a
   * Redis that restarts from its AOF do not.
   */
  private readonly suspect = new Map<string, number>();
  private distrusts = 0;
  private suspectTimer?: NodeJS.Timeout;
  private backgroundDrop?: Promise<void>;
  /** Quota reserved in Redis ahead of use and handed out here (see leases.ts). */
  private readonly leases: LeaseBook<Counter>;
  private leaseTimer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly deps: { redis: Redis; pool: pg.Pool; logger: Logger; licenses?: LicenseCache },
    private readonly options: QuotaOptions,
  ) {
    this.licenses = deps.licenses ?? new LicenseCache(deps.pool, { ttlMs: options.limitsCacheMs });
    // a retired lease's quota goes back in the license's next call, or the sweeper's
    this.leases = new LeaseBook(options.leaseMaxEvents ?? 256, () => this.watchLeases());
  }

  /**
   * QuotaLimitsCache: this license is read again on its next event (here and, broadcast, in other
   * processes); its leases here end (another process's leases end when it reads the new limits).
   */
  invalidate(licenseId: string): void {
    this.licenses.invalidate(licenseId);
    this.leases.retireLicense(licenseId);
    this.sendReturns([licenseId]);
  }

  /**
   * Gives back what leases hold unused and stops leasing: called on shutdown, after the last
   * event has been decided. Waits at most the Redis timeout.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
    // a lease granted to a call already on its way is retired when it lands: a few rounds
    for (let round = 0; round < 3; round++) {
      const licenses = this.leases.retireAll();
      if (licenses.length === 0 || this.deps.redis.status !== 'ready') return;
      await this.withTimeout(Promise.all(licenses.map((id) => this.queueInRedis(id, [], []).catch(() => undefined)))).catch(() => undefined);
    }
  }

  /** What leases hold unused on this counter: in Redis's value, not in anyone's usage. */
  leasedOn(key: string): bigint {
    return this.leases.heldOn(key);
  }

  /** Sends what retired leases hold back to Redis, one call per license (queued behind one on its way). */
  private sendReturns(licenseIds: string[]): void {
    // without Redis, the sweeper (running while anything is to be given back) tries again
    if (this.deps.redis.status !== 'ready') return;
    for (const id of licenseIds) void this.queueInRedis(id, [], []).catch(() => undefined);
  }

  /** Every 250 ms while leases are out: idle ones (and those of an ended period) give their quota back. */
  private watchLeases(): void {
    if (this.leaseTimer || this.closed) return;
    this.leaseTimer = setInterval(() => {
      this.sendReturns(this.leases.retireIdle(Date.now(), LEASE_IDLE_MS));
      if (this.leases.size === 0 && !this.leases.hasReturns()) {
        clearInterval(this.leaseTimer);
        this.leaseTimer = undefined;
      }
    }, 250);
    this.leaseTimer.unref();
  }

  /**
   * The limits of a license that takes events of this tenant and environment; null for any
   * other (another tenant's, the other environment's, a deleted or inactive one: its events are
   * refused by the license rule, and must never be counted, nor refused by quota first).
   */
  private async limitsOf(tenantId: string, environment: Environment, licenseId: string): Promise<LicenseLimits | null> {
    const license = await this.licenseOf(licenseId);
    return licenseRefusal(license, tenantId, environment) ? null : license;
  }

  /** The license (cached); PostgreSQL out of reach is UNAVAILABLE, as when the usage cannot be read. */
  private async licenseOf(licenseId: string) {
    try {
      return await this.licenses.get(licenseId);
    } catch (error) {
      if (!isUnavailableError(error)) throw error;
      throw new AppError('UNAVAILABLE', 'quota cannot be checked right now: PostgreSQL unavailable, retry later', undefined, { cause: error });
    }
  }

  /** The limits of a license of this tenant, whatever its environment or status: for events already judged (giveBack, check). */
  private async tenantLimitsOf(tenantId: string, licenseId: string): Promise<LicenseLimits | null> {
    const license = await this.licenseOf(licenseId);
    return license && license.tenantId === tenantId && !license.deleted ? license : null;
  }

  /** The hot path: periods (time-zone arithmetic) and caps (decimal arithmetic) are worked out once per period. */
  private countersOf(limits: LicenseLimits, usageType: string, at: Date): Counter[] {
    let byType = this.countersCache.get(limits);
    if (!byType) this.countersCache.set(limits, (byType = new Map()));
    const cached = byType.get(usageType);
    const t = at.getTime();
    if (cached && cached.every((c) => c.period.start.getTime() <= t && t < c.period.end.getTime())) return cached;
    const counters = this.computeCounters(limits, usageType, at);
    // Only the current periods are kept: an old event must not evict them.
    if (!cached || t >= Date.now() - 60_000) byType.set(usageType, counters);
    return counters;
  }

  private computeCounters(limits: LicenseLimits, usageType: string, at: Date): Counter[] {
    return limitsFor(limits, usageType).map((limit) => {
      const period = periodContaining(limit.periodType, at, limits.timezone, limits.billingAnchor);
      const capMicro = limit.allowOverage ? null : floorMicro(capOf(limit));
      return {
        // {licenseId} is a hash tag: every counter of a license lives in one Redis Cluster slot.
        key: `${this.options.keyPrefix}quota:{${limits.licenseId}}:${usageType}:${period.type}:${period.start.getTime()}`,
        tenantId: limits.tenantId,
        environment: limits.environment,
        licenseId: limits.licenseId,
        usageType,
        period,
        limit,
        capMicro,
        capText: formatMicro(capMicro ?? 0n),
        graceCapMicro: floorMicro(capOf(limit)),
        levelMicros: limit.levels.map((level) => ({ level, at: levelMicro(limit, level) })),
      };
    });
  }

  /**
   * Reserves quota for each event, in order: admitted events count at once, refused ones
   * not at all. Events of licenses without limits (or unknown to this tenant and environment) pass untouched.
   */
  async reserve(tenantId: string, environment: Environment, events: QuotaEvent[]): Promise<ReserveOutcome[]> {
    const outcomes: ReserveOutcome[] = new Array(events.length);
    const byLicense = new Map<string, number[]>();
    events.forEach((e, i) => {
      const list = byLicense.get(e.licenseId);
      if (list) list.push(i);
      else byLicense.set(e.licenseId, [i]);
    });
    await Promise.all(
      [...byLicense].map(async ([licenseId, indexes]) => {
        const limits = await this.limitsOf(tenantId, environment, licenseId);
        const perEvent = indexes.map((i) => (limits ? this.countersOf(limits, events[i]!.usageType, events[i]!.occurredAt) : []));
        const items: { index: number; amount: bigint; counters: Counter[] }[] = [];
        indexes.forEach((i, j) => {
          const counters = perEvent[j]!;
          if (counters.length === 0) outcomes[i] = { admitted: true, reservation: null, state: null };
          else items.push({ index: i, amount: floorMicro(events[i]!.quantity), counters });
        });
        if (items.length === 0) return;
        const decided = await this.decide(licenseId, items);
        decided.forEach((o, j) => (outcomes[items[j]!.index] = o));
      }),
    );
    return outcomes;
  }

  private decide(licenseId: string, items: DecisionItem[]): Promise<ReserveOutcome[]> | ReserveOutcome[] {
    const now = Date.now();
    if (this.leases.size === 0 || this.closed) return this.decideElsewhere(licenseId, items, this.leaseRequests(items, now));
    const outcomes: ReserveOutcome[] = new Array(items.length);
    const rest = this.takeFromLeases(items, outcomes, now);
    if (rest.length === 0) return outcomes;
    const left = rest.map((i) => items[i]!);
    // asked for now: the lease an item did not fit in is retired here, and its next one is bigger
    const requests = this.leaseRequests(left, now);
    return this.decideElsewhere(licenseId, left, requests).then((decided) => {
      rest.forEach((i, j) => (outcomes[i] = decided[j]!));
      return outcomes;
    });
  }

  /**
   * Decides, into `outcomes`, the items a lease can take, in order; from the first item of some
   * counters that no lease can take, those counters' later items are left too (so that they are
   * judged in order). Returns the indexes left.
   */
  private takeFromLeases(items: DecisionItem[], outcomes: (ReserveOutcome | undefined)[], now: number): number[] {
    const rest: number[] = [];
    let missed: Set<Counter[]> | null = null;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      const befores = missed?.has(item.counters) ? null : this.leases.take(item.counters, item.amount, now);
      if (befores) {
        outcomes[i] = this.admitted(item, befores);
        continue;
      }
      (missed ??= new Set()).add(item.counters);
      rest.push(i);
    }
    return rest;
  }

  /** One lease request per set of counters among these items (the first item's size sets it). */
  private leaseRequests(items: DecisionItem[], now: number): LeaseRequest<Counter>[] {
    if (this.closed || !this.leases.enabled) return [];
    const requests: LeaseRequest<Counter>[] = [];
    for (const item of items) {
      if (requests.some((r) => r.counters === item.counters)) continue;
      const request = this.leases.request(item.counters, item.amount, now);
      if (request) requests.push(request);
    }
    return requests;
  }

  /** An item admitted with these counter values before it. */
  private admitted(item: DecisionItem, befores: bigint[]): ReserveOutcome {
    const counters = item.counters.map((counter, j) => ({ counter, before: befores[j]! }));
    for (const c of item.counters) this.inflight.set(c.key, (this.inflight.get(c.key) ?? 0n) + item.amount);
    return {
      admitted: true,
      reservation: { amount: item.amount, counters, viaRedis: true },
      state: tightest(counters.map(({ counter, before }) => ({ counter, used: before + item.amount }))),
    };
  }

  private decideElsewhere(licenseId: string, items: DecisionItem[], requests: LeaseRequest<Counter>[]): Promise<ReserveOutcome[]> {
    if (this.deps.redis.status !== 'ready') return this.decideWithoutRedis(licenseId, items);
    return this.queueInRedis(licenseId, items, requests).catch(async (error: unknown) => {
      const decided = error instanceof PartlyDecided ? error.outcomes : null;
      const failure = error instanceof PartlyDecided ? error.failure : error;
      if (failure instanceof AppError) {
        // what leases admitted goes back: these events will not be written
        if (decided) await this.release(decided.map((o) => (o?.admitted ? o.reservation : null)));
        throw failure;
      }
      this.deps.logger.warn({ err: failure }, 'quota counters unavailable in Redis; deciding from PostgreSQL');
      if (!decided) return this.decideWithoutRedis(licenseId, items);
      const open = items.flatMap((_, i) => (decided[i] ? [] : [i]));
      const late = await this.decideWithoutRedis(licenseId, open.map((i) => items[i]!));
      open.forEach((i, j) => (decided[i] = late[j]!));
      return decided as ReserveOutcome[];
    });
  }

  private decideWithoutRedis(licenseId: string, items: DecisionItem[]): Promise<ReserveOutcome[]> {
    // The script may still run, and what is admitted now is not in these counters: they are
    // dropped (the first try queued behind the script on the same connection) and rebuilt
    // before Redis decides on them again, also when Redis comes back holding them.
    this.distrust(items.flatMap((i) => i.counters.map((c) => c.key)));
    if (this.options.failMode === 'open') {
      return Promise.resolve(items.map(() => ({ admitted: true, reservation: null, state: null })));
    }
    return this.decideInPostgres(licenseId, items);
  }

  /**
   * One script call per license on its way to Redis at a time. A reservation that finds none
   * goes at once (a lone caller waits for nothing); those asked for while one is on its way
   * wait for its answer and then go together, once that turn of the event loop has read its
   * other sockets, as one script call that judges them in order, exactly as separate calls
   * would have been judged one after another. Under load each call carries what arrived during
   * the one before: a few syscalls (ours and Redis') per batch instead of per event. A license's
   * counters share a Cluster slot. Those waiting wait at most redisTimeoutMs for their turn (the
   * call ahead may be retrying a stalled Redis): past it they are decided without Redis, like a
   * call that timed out.
   */
  private queueInRedis(licenseId: string, items: DecisionItem[], leases: LeaseRequest<Counter>[]): Promise<ReserveOutcome[]> {
    return new Promise((resolve, reject) => {
      const entry: QueuedDecision = { items, leases, resolve, reject };
      if (!this.sending.has(licenseId)) {
        void this.sendFor(licenseId, [entry]);
        return;
      }
      let batch = this.queued.get(licenseId);
      if (!batch) {
        const waiting: WaitingBatch = {
          entries: [],
          deadline: setTimeout(() => {
            if (this.queued.get(licenseId) !== waiting) return;
            this.queued.delete(licenseId);
            const error = new Timeout('Redis did not take the reservations in time');
            for (const q of waiting.entries) q.reject(error);
          }, this.options.redisTimeoutMs),
        };
        waiting.deadline.unref();
        this.queued.set(licenseId, (batch = waiting));
      }
      batch.entries.push(entry);
    });
  }

  private async sendFor(licenseId: string, queue: QueuedDecision[]): Promise<void> {
    this.sending.add(licenseId);
    await this.runQueued(licenseId, queue);
    if (!this.queued.has(licenseId)) {
      this.sending.delete(licenseId);
      return;
    }
    setImmediate(() => {
      const next = this.queued.get(licenseId);
      if (!next) {
        this.sending.delete(licenseId); // those waiting passed their deadline meanwhile
        return;
      }
      this.queued.delete(licenseId);
      clearTimeout(next.deadline);
      void this.sendFor(licenseId, next.entries);
    });
  }

  /**
   * One script call for the whole queue. Redis's state and the suspect counters are looked at
   * here, when the call goes, not when each reservation was asked for: one that waited may find
   * Redis gone since, or counters distrusted by a decision taken without Redis meanwhile.
   */
  private async runQueued(licenseId: string, queue: QueuedDecision[]): Promise<void> {
    const items = queue.length === 1 ? queue[0]!.items : queue.flatMap((q) => q.items);
    // A lease granted while these waited takes what it can, in order; the lease an item does not
    // fit in is retired, so that its unused quota goes back before that item is judged.
    const now = Date.now();
    const outcomes: (ReserveOutcome | undefined)[] = new Array(items.length);
    const rest = this.closed || this.leases.size === 0 ? items.map((_, i) => i) : this.takeFromLeases(items, outcomes, now);
    for (const i of rest) this.leases.retireCounters(items[i]!.counters);
    const toJudge = rest.length === items.length ? items : rest.map((i) => items[i]!);
    // Unused quota of this license's retired leases goes back in the same call, before anything is judged.
    const returns = this.leases.takeReturns(licenseId);
    // a lease granted since these were asked for makes their request moot
    const requests = (queue.length === 1 ? queue[0]!.leases : this.distinctRequests(queue)).filter((r) => !this.leases.has(r.id));
    try {
      if (this.deps.redis.status !== 'ready') throw new Error(`Redis is ${this.deps.redis.status}`);
      if (this.suspect.size > 0) {
        await this.withTimeout(this.dropSuspect([...toJudge, ...returns].flatMap((i) => i.counters.map((c) => c.key))));
      }
      const judged = toJudge.length > 0 || returns.length > 0 || requests.length > 0 ? await this.decideInRedis(toJudge, returns, requests) : [];
      rest.forEach((i, j) => (outcomes[i] = judged[j]!));
      let from = 0;
      for (const q of queue) {
        q.resolve((queue.length === 1 ? outcomes : outcomes.slice(from, from + q.items.length)) as ReserveOutcome[]);
        from += q.items.length;
      }
    } catch (error) {
      if (returns.length > 0) {
        // The script may still run (a timeout), returns and all: the counters they touch are
        // dropped and rebuilt (counting them, as they are held again) before Redis judges on them.
        this.distrust(returns.flatMap((r) => r.counters.map((c) => c.key)));
        this.leases.putBack(licenseId, returns);
        this.watchLeases(); // resent by the sweeper if no call of this license comes first
      }
      let from = 0;
      for (const q of queue) {
        const mine = outcomes.slice(from, from + q.items.length);
        from += q.items.length;
        q.reject(mine.some((o) => o !== undefined) ? new PartlyDecided(error, mine) : error);
      }
    }
  }

  /** The lease requests of several queued decisions: one per set of counters, the first asked. */
  private distinctRequests(queue: QueuedDecision[]): LeaseRequest<Counter>[] {
    const out: LeaseRequest<Counter>[] = [];
    for (const q of queue) for (const r of q.leases) if (!out.some((o) => o.id === r.id)) out.push(r);
    return out;
  }

  /** These counters are not to be trusted until they have been deleted from Redis. */
  private distrust(keys: string[]): void {
    for (const key of keys) this.suspect.set(key, ++this.distrusts);
    if (this.deps.redis.status === 'ready') void this.dropSuspect(keys).catch(() => undefined);
    // Until Redis answers again, keep trying in the background: another process that has not
    // seen the outage must find these counters gone, not short of what was admitted here.
    this.suspectTimer ??= setInterval(() => {
      if (this.suspect.size === 0) {
        clearInterval(this.suspectTimer);
        this.suspectTimer = undefined;
        return;
      }
      // one background attempt at a time: while a master fails over, DELs wait in the client
      if (this.deps.redis.status === 'ready' && !this.backgroundDrop) {
        this.backgroundDrop = this.dropSuspect([...this.suspect.keys()])
          .catch(() => undefined)
          .finally(() => (this.backgroundDrop = undefined));
      }
    }, 250);
    this.suspectTimer.unref();
  }

  /** Deletes those of `keys` that are suspect, one call per license (one Redis Cluster slot). */
  private async dropSuspect(keys: string[]): Promise<void> {
    const byTag = new Map<string, string[]>();
    const since = new Map<string, number>();
    for (const key of keys) {
      const distrusted = this.suspect.get(key);
      if (distrusted === undefined || since.has(key)) continue;
      since.set(key, distrusted);
      const tag = /\{[^}]*\}/.exec(key)![0];
      byTag.set(tag, [...(byTag.get(tag) ?? []), key]);
    }
    await Promise.all(
      [...byTag.values()].map(async (group) => {
        await this.deps.redis.del(...group);
        // distrusted again while the DEL was on its way: that admission may postdate it
        for (const key of group) if (this.suspect.get(key) === since.get(key)) this.suspect.delete(key);
      }),
    );
  }

  private withTimeout<T>(promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Timeout('Redis did not answer in time')), this.options.redisTimeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  private async decideInRedis(items: DecisionItem[], returns: LeaseReturn<Counter>[] = [], requests: LeaseRequest<Counter>[] = []): Promise<ReserveOutcome[]> {
    const keys: string[] = [];
    const counterByKey = new Map<string, Counter>();
    for (const group of [returns, items, requests])
      for (const entry of group)
        for (const c of entry.counters)
          if (!counterByKey.has(c.key)) {
            counterByKey.set(c.key, c);
            keys.push(c.key);
          }
    const indexOf = new Map(keys.map((k, i) => [k, i + 1]));
    const args: (string | number)[] = [returns.length];
    for (const r of returns) {
      args.push(r.amount.toString(), r.counters.length);
      for (const c of r.counters) args.push(indexOf.get(c.key)!);
    }
    args.push(items.length);
    for (const item of items) {
      args.push(item.amount.toString(), item.counters.length);
      for (const c of item.counters) args.push(indexOf.get(c.key)!, c.capMicro === null ? -1 : c.capMicro.toString());
    }
    args.push(requests.length);
    for (const r of requests) {
      args.push(r.maxMicro.toString(), r.minMicro.toString(), r.unitMicro.toString(), r.counters.length);
      for (const c of r.counters) args.push(indexOf.get(c.key)!, c.capMicro === null ? -1 : c.capMicro.toString());
    }
    for (let round = 0; round < 3; round++) {
      const reply = (await this.withTimeout(runScript(this.deps.redis, RESERVE_LUA, keys, args))) as (number | number[])[];
      if (reply[0] === 0) {
        await Promise.all((reply[1] as number[]).map((i) => this.rebuild(counterByKey.get(keys[i - 1]!)!)));
        continue;
      }
      this.leases.returned(returns);
      const outcomes: ReserveOutcome[] = [];
      let p = 1;
      for (const item of items) {
        const admitted = reply[p++] === 1;
        const befores = item.counters.map(() => BigInt(reply[p++] as number));
        if (admitted) {
          outcomes.push(this.admitted(item, befores));
        } else {
          const refusedBy = item.counters.findIndex((c, j) => c.capMicro !== null && befores[j]! + item.amount > c.capMicro);
          outcomes.push({ admitted: false, state: stateOf(item.counters[refusedBy]!, befores[refusedBy]!) });
        }
      }
      const now = Date.now();
      for (const r of requests) {
        const granted = BigInt(reply[p++] as number);
        const befores = r.counters.map(() => BigInt(reply[p++] as number));
        this.leases.granted(r, granted, befores, now);
        if (granted <= 0n) continue;
        if (!this.closed) {
          this.watchLeases(); // idle leases are given back
          continue;
        }
        // granted after shutdown began: straight back
        this.leases.retire(r.id);
        this.sendReturns([r.counters[0]!.licenseId]);
      }
      return outcomes;
    }
    throw new Error('quota counters kept disappearing while being rebuilt');
  }

  /**
   * Usage so far from PostgreSQL, plus what this process has admitted and not yet written.
   * In-flight amounts are read before PostgreSQL: an event that commits (and stops being in
   * flight) while the query runs is then counted twice, which only refuses early, rather
   * than not at all, which would admit past the cap.
   */
  private async usedFromPostgres(counter: Counter, leased: 'held' | 'live' | 'none' = 'held'): Promise<bigint> {
    // What leases hold unused is in Redis's counters like what is in flight, though no one has
    // used it yet: a rebuilt counter holds all of it (what is on its way back comes off it later),
    // a decision taken without Redis leaves room for what live leases may still hand out, and an
    // answer about usage counts none of it.
    const held = leased === 'held' ? this.leases.heldOn(counter.key) : leased === 'live' ? this.leases.liveOn(counter.key) : 0n;
    const inflight = (this.inflight.get(counter.key) ?? 0n) + held;
    const totals = await licenseUsage(
      this.deps.pool,
      { tenantId: counter.tenantId, licenseId: counter.licenseId, usageType: counter.usageType },
      counter.period,
    );
    return floorMicro(totals.get(counter.usageType) ?? '0') + inflight;
  }

  /**
   * Sets a missing counter from PostgreSQL (unless another process has set it meanwhile).
   * One rebuild per counter at a time in this process, and nothing of this process can
   * reserve on the counter while it is missing, so the value set is never stale here.
   */
  private rebuild(counter: Counter): Promise<void> {
    const running = this.rebuilding.get(counter.key);
    if (running) return running;
    const done = this.usedFromPostgres(counter)
      .then((value) => this.deps.redis.set(counter.key, value.toString(), 'PXAT', counter.period.end.getTime() + DAY_MS, 'NX'))
      .then(() => undefined)
      .finally(() => this.rebuilding.delete(counter.key));
    this.rebuilding.set(counter.key, done);
    return done;
  }

  private async decideInPostgres(licenseId: string, items: DecisionItem[]): Promise<ReserveOutcome[]> {
    const previous = this.fallbackChains.get(licenseId) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(async () => {
      const used = new Map<string, bigint>();
      try {
        for (const item of items)
          for (const c of item.counters) if (!used.has(c.key)) used.set(c.key, await this.usedFromPostgres(c, 'live'));
      } catch (error) {
        throw new AppError('UNAVAILABLE', 'quota cannot be checked right now (Redis and PostgreSQL unavailable), retry later', undefined, { cause: error });
      }
      return items.map((item): ReserveOutcome => {
        const refusedBy = item.counters.find((c) => c.capMicro !== null && used.get(c.key)! + item.amount > c.capMicro);
        if (refusedBy) return { admitted: false, state: stateOf(refusedBy, used.get(refusedBy.key)!) };
        const counters = item.counters.map((counter) => ({ counter, before: used.get(counter.key)! }));
        for (const c of item.counters) {
          used.set(c.key, used.get(c.key)! + item.amount);
          this.inflight.set(c.key, (this.inflight.get(c.key) ?? 0n) + item.amount);
        }
        return {
          admitted: true,
          reservation: { amount: item.amount, counters, viaRedis: false },
          state: tightest(counters.map(({ counter, before }) => ({ counter, used: before + item.amount }))),
        };
      });
    });
    this.fallbackChains.set(licenseId, run);
    try {
      return await run;
    } finally {
      if (this.fallbackChains.get(licenseId) === run) this.fallbackChains.delete(licenseId);
    }
  }

  private forget(reservation: Reservation): void {
    for (const { counter } of reservation.counters) {
      const left = (this.inflight.get(counter.key) ?? 0n) - reservation.amount;
      if (left > 0n) this.inflight.set(counter.key, left);
      else this.inflight.delete(counter.key);
    }
  }

  /**
   * Gives back what duplicates, refused and failed writes reserved. They stay in flight
   * until Redis has taken them back: a counter rebuilt meanwhile counts them, and the
   * decrement then takes them off it.
   */
  async release(reservations: (Reservation | null)[]): Promise<void> {
    const amounts = new Map<string, bigint>();
    for (const r of reservations) {
      if (!r) continue;
      if (r.viaRedis) for (const { counter } of r.counters) amounts.set(counter.key, (amounts.get(counter.key) ?? 0n) + r.amount);
    }
    await this.decrement(amounts, 'could not give back reserved quota');
    for (const r of reservations) if (r) this.forget(r);
  }

  /** Takes amounts off existing counters, one call per license; a counter that is gone is left to its rebuild. */
  private async decrement(amounts: Map<string, bigint>, failure: string): Promise<void> {
    // One call per license: a license's counters share a Redis Cluster slot.
    const byTag = new Map<string, string[]>();
    for (const key of amounts.keys()) {
      const tag = /\{[^}]*\}/.exec(key)![0];
      byTag.set(tag, [...(byTag.get(tag) ?? []), key]);
    }
    await Promise.all(
      [...byTag.values()].map((keys) =>
        runScript(this.deps.redis, RELEASE_LUA, keys, keys.map((k) => amounts.get(k)!.toString())).catch((err: unknown) =>
          // A counter left too high only refuses early; the next rebuild corrects it.
          this.deps.logger.warn({ err }, failure),
        ),
      ),
    );
  }

  /**
   * Stored events stopped counting (they were voided, and that is committed): each one's
   * amount comes off the counters of the periods its occurredAt falls in, under the
   * license's limits, exactly as it was added. A counter that is gone is left alone: its
   * rebuild reads PostgreSQL, where voided events no longer count. (Should a counter vanish
   * and be rebuilt in the moment between the void's commit and this call, the event comes
   * off twice; that needs Redis to lose the key in that very window.)
   */
  async giveBack(tenantId: string, events: QuotaEvent[]): Promise<void> {
    const byLicense = new Map<string, QuotaEvent[]>();
    for (const e of events) {
      const list = byLicense.get(e.licenseId);
      if (list) list.push(e);
      else byLicense.set(e.licenseId, [e]);
    }
    const amounts = new Map<string, bigint>();
    for (const [licenseId, licenseEvents] of byLicense) {
      // the voided events were found in the caller's environment already
      const limits = await this.tenantLimitsOf(tenantId, licenseId);
      if (!limits) continue;
      for (const e of licenseEvents) {
        const amount = floorMicro(e.quantity);
        for (const c of this.computeCounters(limits, e.usageType, e.occurredAt)) amounts.set(c.key, (amounts.get(c.key) ?? 0n) + amount);
      }
    }
    if (amounts.size === 0) return;
    await this.decrement(amounts, 'could not give voided usage back to the quota counters');
  }

  /** The events are stored: they stop being in flight. Returns the levels and caps they crossed. */
  settle(reservations: (Reservation | null)[]): Crossings {
    const crossings: Crossings = { levels: [], overages: [] };
    for (const r of reservations) {
      if (!r) continue;
      this.forget(r);
      for (const { counter, before } of r.counters) {
        const after = before + r.amount;
        const base = { tenantId: counter.tenantId, environment: counter.environment, licenseId: counter.licenseId, usageType: counter.usageType, period: counter.period, limit: counter.limit };
        for (const { level, at } of counter.levelMicros) {
          if (before < at && at <= after) crossings.levels.push({ ...base, level, used: formatMicro(after) });
        }
        if (counter.limit.allowOverage && before <= counter.graceCapMicro && after > counter.graceCapMicro) {
          crossings.overages.push({ ...base, used: formatMicro(after) });
        }
      }
    }
    return crossings;
  }

  /** Whether `quantity` more of `usageType` would be admitted now; nothing is recorded. */
  async check(tenantId: string, environment: Environment, args: { licenseId: string; usageType: string; quantity: string }, at = new Date()) {
    // The license rule's "not found" (an inactive license's limits and usage may still be looked at).
    const limits = await this.licenseOf(args.licenseId);
    if (!limits || licenseRefusal(limits, tenantId, environment)?.code === 'LICENSE_NOT_FOUND') throw new AppError('NOT_FOUND', 'license not found');
    const counters = this.countersOf(limits, args.usageType, at);
    const amount = floorMicro(args.quantity);
    const used = await Promise.all(counters.map((c) => this.currentValue(c)));
    const rows = counters.map((c, i) => {
      const cap = c.capMicro;
      return {
        periodType: c.period.type,
        periodStart: c.period.start,
        periodEnd: c.period.end,
        limit: c.limit.limit.toFixed(),
        cap: capOf(c.limit).toFixed(),
        hard: cap !== null,
        used: formatMicro(used[i]!),
        remaining: cap === null ? null : formatMicro(used[i]! >= cap ? 0n : cap - used[i]!),
        allowed: cap === null || used[i]! + amount <= cap,
      };
    });
    return { allowed: rows.every((r) => r.allowed), usageType: args.usageType, limits: rows };
  }

  private async currentValue(counter: Counter): Promise<bigint> {
    if (this.deps.redis.status === 'ready' && !this.suspect.has(counter.key)) {
      try {
        const value = await this.withTimeout(this.deps.redis.get(counter.key));
        if (value !== null) {
          const used = BigInt(value) - this.leases.heldOn(counter.key);
          return used > 0n ? used : 0n;
        }
      } catch {
        // fall through to PostgreSQL
      }
    }
    return this.usedFromPostgres(counter, 'none');
  }
}
