import type { NormalizedEvent } from './event-schema';
import type { EventOutcome, EventWriter } from './ingest';

interface Pending {
  event: NormalizedEvent;
  /** Resolves to whether the event may be written (a quota decision); absent = yes. */
  gate?: Promise<boolean>;
  resolve: (outcome: EventOutcome) => void;
  reject: (error: unknown) => void;
}

export interface GroupCommitOptions {
  /**
   * How long the first event of a group waits for company before the group is written, while
   * another group is being written. With none in flight, an event is written at once.
   */
  flushIntervalMs: number;
  maxGroupSize: number;
  /** Groups written at once; while all are busy, new events gather into the next group. */
  maxInflight: number;
}

/** The outcome of an event its gate kept out of the group. */
export const NOT_WRITTEN: EventOutcome = { status: 'rejected', code: 'QUOTA_EXCEEDED', message: 'not written' };

/**
 * Single-event calls are written in groups: one multi-row statement every few milliseconds
 * instead of a round trip per event. Each caller's promise settles only after the statement
 * holding its event has committed (or failed), so an answer never runs ahead of the data.
 */
export class GroupCommitter {
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** Whether the pending timer is a flush at once (delay 0) rather than a wait for company. */
  private timerImmediate = false;
  private inflight = 0;
  private readonly idle = new Set<() => void>();

  constructor(
    private readonly writer: EventWriter,
    private readonly options: GroupCommitOptions,
  ) {}

  /**
   * With a gate, the event joins a group at once and the group waits for the gate before it
   * is written, so a quota decision overlaps the wait for company instead of adding to it.
   * An event whose gate says no is not written (its outcome is NOT_WRITTEN); one whose gate
   * fails is not written either, and its promise rejects with the gate's error.
   */
  submit(event: NormalizedEvent, gate?: Promise<boolean>): Promise<EventOutcome> {
    // The gate is only looked at when its group is flushed, which can be long after it has
    // settled (every flush slot busy, or the pool dry): a rejection left unhandled until then
    // takes the process down. Handled here at once; flush() still reads it through allSettled.
    gate?.catch(() => undefined);
    return new Promise((resolve, reject) => {
      this.pending.push({ event, gate, resolve, reject });
      // Idle: no reason to wait (a lone caller gets one round trip). Busy: gather company, so
      // that under load statements carry many events instead of each event its own.
      if (this.pending.length >= this.options.maxGroupSize || this.inflight === 0) this.flushSoon(0);
      else this.flushSoon(this.options.flushIntervalMs);
    });
  }

  private flushSoon(delayMs: number): void {
    if (this.inflight >= this.options.maxInflight) return; // a finishing group picks these up
    // A flush already due takes the new event too: no timer torn down and set again per event.
    if (this.timer && (delayMs > 0 || this.timerImmediate)) return;
    // Here a pending timer can only be a wait for company (a flush at once returned above).
    if (this.timer) clearTimeout(this.timer as NodeJS.Timeout);
    this.timerImmediate = delayMs === 0;
    const fire = () => {
      this.timer = undefined;
      void this.flush();
    };
    // "At once" is the next turn of the event loop (requests read in this one join the group),
    // not setTimeout(0), which Node rounds up to 1 ms: a lone caller would wait for it.
    this.timer = delayMs === 0 ? setImmediate(fire) : setTimeout(fire, delayMs);
  }


  private async flush(): Promise<void> {
    if (this.pending.length === 0 || this.inflight >= this.options.maxInflight) return;
    const taken = this.pending.splice(0, this.options.maxGroupSize);
    this.inflight += 1;
    const group: Pending[] = [];
    try {
      const gates = await Promise.allSettled(taken.map((p) => p.gate ?? true));
      taken.forEach((p, i) => {
        const gate = gates[i]!;
        if (gate.status === 'rejected') p.reject(gate.reason);
        else if (!gate.value) p.resolve(NOT_WRITTEN);
        else group.push(p);
      });
      const outcomes = await this.writer.write(group.map((p) => p.event));
      group.forEach((p, i) => p.resolve(outcomes[i]!));
    } catch (error) {
      for (const p of group) p.reject(error);
    } finally {
      this.inflight -= 1;
      if (this.pending.length > 0) this.flushSoon(0);
      else if (this.inflight === 0) for (const done of this.idle) done();
    }
  }

  /** Resolves once every submitted event has been written (used at shutdown). */
  async drain(): Promise<void> {
    if (this.pending.length === 0 && this.inflight === 0) return;
    if (this.pending.length > 0) this.flushSoon(0);
    await new Promise<void>((resolve) => {
      const done = () => {
        this.idle.delete(done);
        resolve();
      };
      this.idle.add(done);
    });
  }
}
