/**
 * Quota leases: a block of a license's quota reserved in Redis ahead of use (the same
 * check-and-increment as any event, so the counters never pass a cap), then handed out by this
 * process to its events in order, without a round trip each. A block is only taken while the
 * room left is large: at most 1/16 of it and 1/32 of the cap, and not at all under 4 events'
 * worth (so a cap under 128 events is never leased); near a cap every event is judged by Redis
 * on its own, exactly as without leases. What a lease holds and has not used goes back to the
 * counters (in the license's next script call) when an event does not fit in it, when it has not
 * been used for LEASE_IDLE_MS, when the license's limits change and on shutdown.
 *
 * This module only keeps the books; the enforcer talks to Redis.
 */

/** How long an unused lease is kept before what it holds goes back to the counters. */
export const LEASE_IDLE_MS = 1000;
/** The smallest block worth a lease, in events of the size that asked for it. */
export const LEASE_MIN_EVENTS = 4;
/** A lease is at most 1/LEASE_ROOM_SHARE of the room left under a cap (the script applies it). */
export const LEASE_ROOM_SHARE = 16;
/** A lease is at most 1/LEASE_CAP_SHARE of a cap (the script applies it). */
export const LEASE_CAP_SHARE = 32;
const FIRST_LEASE_EVENTS = 8;
/** A lease used up faster than this asks for twice as much next time; one that lasted 8× as long, for half. */
const FAST_LEASE_MS = 250;

export interface LeaseCounter {
  key: string;
  licenseId: string;
  usageType: string;
  capMicro: bigint | null;
  period: { start: Date; end: Date };
}

interface Lease<C extends LeaseCounter> {
  counters: C[];
  /** Per counter, the value the next event taken from the lease starts from. */
  next: bigint[];
  /** Millionths still unused (the same on every counter of the lease). */
  left: bigint;
  /** The size asked for, in events: the next lease of the same counters asks for more or less. */
  events: number;
  grantedAt: number;
  usedAt: number;
}

/** Unused quota of a retired lease, on its way back to the counters. */
export interface LeaseReturn<C extends LeaseCounter> {
  counters: C[];
  amount: bigint;
}

export interface LeaseRequest<C extends LeaseCounter> {
  id: string;
  counters: C[];
  events: number;
  maxMicro: bigint;
  minMicro: bigint;
  /** A lease is a whole number of these (the size of the event that asked): none is left over unusable. */
  unitMicro: bigint;
}

function sameKeys(a: readonly LeaseCounter[], b: readonly LeaseCounter[]): boolean {
  return a.length === b.length && a.every((c, i) => c.key === b[i]!.key);
}

const idOf = (counters: readonly LeaseCounter[]) => `${counters[0]!.licenseId}\u0000${counters[0]!.usageType}`;

function sameCounters(a: readonly LeaseCounter[], b: readonly LeaseCounter[]): boolean {
  if (a === b) return true;
  return a.length === b.length && a.every((c, i) => c.key === b[i]!.key && c.capMicro === b[i]!.capMicro);
}

export class LeaseBook<C extends LeaseCounter> {
  private readonly leases = new Map<string, Lease<C>>();
  /** Per counter key: what leases hold unused, including what is on its way back. */
  private readonly held = new Map<string, bigint>();
  /** Per counter key: of `held`, what retired leases are giving back (nobody will use it). */
  private readonly returning = new Map<string, bigint>();
  private readonly returns = new Map<string, LeaseReturn<C>[]>();

  /** maxEvents 0: no leases at all. `onReturn`: a retired lease has quota to give back. */
  constructor(
    private readonly maxEvents: number,
    private readonly onReturn: () => void = () => undefined,
  ) {}

  get enabled(): boolean {
    return this.maxEvents > 0;
  }

  /** Leased and not used on this counter (a rebuilt counter must count it; an answer about usage must not). */
  heldOn(key: string): bigint {
    return this.held.get(key) ?? 0n;
  }

  /** Of that, what live leases may still hand out (a decision taken without Redis must leave room for it). */
  liveOn(key: string): bigint {
    return this.heldOn(key) - (this.returning.get(key) ?? 0n);
  }

  /** A lease is out for these counters (`id` of a request). */
  has(id: string): boolean {
    return this.leases.has(id);
  }

  get size(): number {
    return this.leases.size;
  }

  /**
   * Takes `amount` from the lease of these counters. Returns each counter's value before it (as
   * Redis would have answered), or null when there is no lease, it has too little left, or the
   * counters are others (another period's: the lease stays; the same with other caps, after a
   * limit changed: the lease is retired).
   */
  take(counters: C[], amount: bigint, now: number): bigint[] | null {
    if (this.leases.size === 0) return null;
    const id = idOf(counters);
    const lease = this.leases.get(id);
    if (!lease) return null;
    if (lease.counters !== counters) {
      if (!sameCounters(lease.counters, counters)) {
        if (sameKeys(lease.counters, counters)) this.retire(id);
        return null;
      }
      lease.counters = counters;
    }
    if (lease.left < amount) return null;
    const befores = lease.next.slice();
    if (amount > 0n) {
      for (let j = 0; j < lease.next.length; j++) lease.next[j]! += amount;
      lease.left -= amount;
      this.hold(this.held, counters, -amount);
    }
    lease.usedAt = now;
    return befores;
  }

  /**
   * What to ask Redis for along with an event of `amount` on these counters that no lease could
   * take: the lease it did not fit in is retired first. Null when leases are off, there is one
   * already, or the event is of another period than now's (its counters are not kept).
   */
  request(counters: C[], amount: bigint, now: number): LeaseRequest<C> | null {
    if (!this.enabled || amount <= 0n) return null;
    if (!counters.every((c) => c.period.start.getTime() <= now && now < c.period.end.getTime())) return null;
    const id = idOf(counters);
    const current = this.leases.get(id);
    let events = FIRST_LEASE_EVENTS;
    if (current) {
      if (current.left >= amount && sameCounters(current.counters, counters)) return null;
      const lasted = now - current.grantedAt;
      if (lasted < FAST_LEASE_MS) events = Math.min(this.maxEvents, current.events * 2);
      else if (lasted > 8 * FAST_LEASE_MS) events = Math.max(FIRST_LEASE_EVENTS, Math.floor(current.events / 2));
      else events = current.events;
      this.retire(id);
    }
    events = Math.min(events, this.maxEvents);
    if (events < LEASE_MIN_EVENTS) return null;
    // a share of a cap under LEASE_MIN_EVENTS events: never leased, no need to ask
    const least = amount * BigInt(LEASE_MIN_EVENTS);
    if (counters.some((c) => c.capMicro !== null && c.capMicro / BigInt(LEASE_CAP_SHARE) < least)) return null;
    return { id, counters, events, maxMicro: amount * BigInt(events), minMicro: least, unitMicro: amount };
  }

  /** Redis's answer to a request: `granted` millionths on every counter, which stood at `befores`. */
  granted(request: LeaseRequest<C>, granted: bigint, befores: bigint[], now: number): void {
    if (granted <= 0n) return;
    if (this.leases.has(request.id)) this.retire(request.id);
    this.leases.set(request.id, { counters: request.counters, next: befores, left: granted, events: request.events, grantedAt: now, usedAt: now });
    this.hold(this.held, request.counters, granted);
  }

  /** The lease of these counters (not of another period's), if any, stops handing out quota. */
  retireCounters(counters: readonly C[]): void {
    const id = idOf(counters);
    const lease = this.leases.get(id);
    if (lease && sameKeys(lease.counters, counters)) this.retire(id);
  }

  /** The lease stops handing out quota; what it holds waits for the license's next script call. */
  retire(id: string): void {
    const lease = this.leases.get(id);
    if (!lease) return;
    this.leases.delete(id);
    if (lease.left <= 0n) return;
    const licenseId = lease.counters[0]!.licenseId;
    const list = this.returns.get(licenseId);
    const back = { counters: lease.counters, amount: lease.left };
    this.hold(this.returning, lease.counters, lease.left);
    if (list) list.push(back);
    else this.returns.set(licenseId, [back]);
    this.onReturn();
  }

  /** Retires every lease of the license (its limits or status changed). */
  retireLicense(licenseId: string): void {
    for (const [id, lease] of this.leases) if (lease.counters[0]!.licenseId === licenseId) this.retire(id);
  }

  /** Retires leases unused for `idleMs` or whose period is over; the licenses with something to give back. */
  retireIdle(now: number, idleMs: number): string[] {
    for (const [id, lease] of this.leases) {
      if (now - lease.usedAt >= idleMs || lease.counters.some((c) => now >= c.period.end.getTime())) this.retire(id);
    }
    return [...this.returns.keys()];
  }

  retireAll(): string[] {
    for (const id of [...this.leases.keys()]) this.retire(id);
    return [...this.returns.keys()];
  }

  /** The returns to carry in the license's next script call (taken off the list). */
  takeReturns(licenseId: string): LeaseReturn<C>[] {
    const list = this.returns.get(licenseId);
    if (!list) return [];
    this.returns.delete(licenseId);
    return list;
  }

  /** Redis applied these returns. */
  returned(returns: readonly LeaseReturn<C>[]): void {
    for (const r of returns) {
      this.hold(this.held, r.counters, -r.amount);
      this.hold(this.returning, r.counters, -r.amount);
    }
  }

  /** The call that carried them failed: they go in the next one. */
  putBack(licenseId: string, returns: LeaseReturn<C>[]): void {
    if (returns.length === 0) return;
    this.returns.set(licenseId, [...returns, ...(this.returns.get(licenseId) ?? [])]);
  }

  hasReturns(): boolean {
    return this.returns.size > 0;
  }

  private hold(book: Map<string, bigint>, counters: readonly C[], amount: bigint): void {
    for (const c of counters) {
      const value = (book.get(c.key) ?? 0n) + amount;
      if (value === 0n) book.delete(c.key);
      else book.set(c.key, value);
    }
  }
}
