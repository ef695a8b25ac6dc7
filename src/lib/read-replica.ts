import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { PrismaClient } from '../generated/prisma/client';
import { isUnavailableError } from './errors';
import type { Metrics } from './metrics';

/** A database to read from: the primary or the replica. */
export interface ReadSource {
  pool: pg.Pool;
  prisma: PrismaClient;
  /** Connections of their own for exports (see Database.exportPool). */
  exportPool: pg.Pool;
}

export interface ReadTarget extends ReadSource {
  source: 'primary' | 'replica';
  /** How far behind the primary this source may be, in ms (an upper bound; 0 for the primary). */
  lagMs: number;
}

/** Why a read went where it went (the `reason` label of tally_db_reads_total). */
export type ReadRoute = 'replica' | 'no_replica' | 'replica_lagging' | 'replica_down';

export type ReplicaMetrics = Pick<Metrics, 'replicaUp' | 'replicaLagSeconds' | 'replicaLagBytes' | 'dbReads'>;

/** A WAL position ('16/B374D848') as a number of bytes. */
export function parseLsn(lsn: string): bigint {
  const [high, low] = lsn.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

const MAX_SAMPLES = 10_000;
const MAX_GENERATIONS = 10_000;

/**
 * Routes read-only views to a streaming replica (DATABASE_READ_URL) while it is at most
 * `maxLagMs` behind the primary, else to the primary; and measures how far behind it is.
 *
 * Lag is measured by WAL position, so it is right on an idle primary too (where
 * `now() - pg_last_xact_replay_timestamp()` grows without anything to replay): every poll reads
 * the primary's `pg_current_wal_lsn()` at a known moment, then the replica's
 * `pg_last_wal_replay_lsn()`. The replica holds every commit the primary had made at the
 * latest sampled moment whose position it has replayed (`freshAsOf`), so at any later time the
 * data it answers with is at most `now - freshAsOf` old: the bound this class reports, exact to
 * one poll interval, and 0 bytes behind when caught up. Polled every maxLagMs / 5 (50 ms to 1 s).
 */
export class ReplicaReads {
  private samples: { at: number; lsn: bigint }[] = [];
  private freshAsOf: number | null = null;
  private up = false;
  private lagBytes: number | null = null;
  private identified = false;
  private failedBefore = false;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private stopped = false;
  private metrics: ReplicaMetrics | undefined;
  /** tenant + cache generation → when this process first saw it (see freshSince). */
  private readonly generationsSeen = new Map<string, number>();
  readonly pollMs: number;

  constructor(
    private readonly primary: ReadSource,
    private readonly replica: ReadSource | null,
    private readonly options: { maxLagMs: number; pollMs?: number; onError?: (error: unknown) => void },
  ) {
    this.pollMs = options.pollMs ?? Math.min(1000, Math.max(50, Math.round(options.maxLagMs / 5)));
  }

  get configured(): boolean {
    return this.replica !== null;
  }

  get maxLagMs(): number {
    return this.options.maxLagMs;
  }

  /** Starts measuring the replica's lag (nothing to do without a replica). */
  start(metrics?: ReplicaMetrics): void {
    this.metrics = metrics;
    if (!this.replica || this.timer || this.stopped) return;
    const tick = () => {
      this.polling = this.poll().finally(() => {
        this.polling = undefined;
        if (!this.stopped) this.timer = setTimeout(tick, this.pollMs).unref();
      });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.polling;
  }

  /** One measurement: the primary's WAL position now, then how much of it the replica has replayed. */
  async poll(): Promise<void> {
    if (!this.replica) return;
    try {
      if (!this.identified) {
        // LSNs of two unrelated clusters compare as nonsense: the replica must be a physical copy of the primary.
        const sql = 'SELECT system_identifier::text AS id FROM pg_control_system()';
        const [p, r] = await Promise.all([this.primary.pool.query<{ id: string }>(sql), this.replica.pool.query<{ id: string }>(sql)]);
        if (p.rows[0]?.id !== r.rows[0]?.id) throw new Error('DATABASE_READ_URL is not a streaming replica of DATABASE_URL (another system identifier)');
        this.identified = true;
      }
      const at = performance.now();
      const primary = await this.primary.pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      const replica = await this.replica.pool.query<{ recovery: boolean; replayed: string | null }>(
        'SELECT pg_is_in_recovery() AS recovery, pg_last_wal_replay_lsn()::text AS replayed',
      );
      const row = replica.rows[0];
      // A promoted (no longer recovering) copy takes writes of its own: not a replica to read from.
      if (!row?.recovery || row.replayed === null) throw new Error('DATABASE_READ_URL is not in recovery (not a standby)');
      this.record(at, parseLsn(primary.rows[0]!.lsn), parseLsn(row.replayed));
      this.up = true;
    } catch (error) {
      // Told once per outage, not once per poll.
      if (this.up || !this.failedBefore) this.options.onError?.(error);
      this.failedBefore = true;
      this.up = false;
    }
    this.report();
  }

  private record(at: number, primaryLsn: bigint, replayed: bigint): void {
    this.samples.push({ at, lsn: primaryLsn });
    if (this.samples.length > MAX_SAMPLES) this.samples.shift(); // only loosens the bound
    let fresh = -1;
    for (let i = this.samples.length - 1; i >= 0; i--) {
      if (this.samples[i]!.lsn <= replayed) {
        fresh = i;
        break;
      }
    }
    if (fresh >= 0) {
      this.freshAsOf = Math.max(this.freshAsOf ?? -Infinity, this.samples[fresh]!.at);
      this.samples = this.samples.slice(fresh); // older samples can never be the answer again
    }
    this.lagBytes = Number(primaryLsn > replayed ? primaryLsn - replayed : 0n);
  }

  private report(): void {
    if (!this.metrics) return;
    this.metrics.replicaUp.set(this.up ? 1 : 0);
    const lag = this.lagBoundMs();
    if (lag !== null) this.metrics.replicaLagSeconds.set(lag / 1000);
    if (this.lagBytes !== null) this.metrics.replicaLagBytes.set(this.lagBytes);
  }

  /** At most how far behind the replica is now, in ms; null when unknown (no replica, not measured yet, or down). */
  lagBoundMs(now = performance.now()): number | null {
    if (!this.replica || !this.up || this.freshAsOf === null) return null;
    return Math.max(0, now - this.freshAsOf);
  }

  /** Bytes of WAL the replica had not replayed at the last measurement. */
  get lagBytesAtLastPoll(): number | null {
    return this.lagBytes;
  }

  /** Where a read-only view reads now. */
  pick(): ReadTarget {
    const primary: ReadTarget = { ...this.primary, source: 'primary', lagMs: 0 };
    if (!this.replica) return this.count(primary, 'no_replica');
    const lag = this.lagBoundMs();
    if (lag === null) return this.count(primary, 'replica_down');
    if (lag > this.options.maxLagMs) return this.count(primary, 'replica_lagging');
    return this.count({ ...this.replica, source: 'replica', lagMs: Math.ceil(lag) }, 'replica');
  }

  /** The primary, as a target (the fallback of a read that failed on the replica). */
  primaryTarget(): ReadTarget {
    return { ...this.primary, source: 'primary', lagMs: 0 };
  }

  private count(target: ReadTarget, reason: ReadRoute): ReadTarget {
    this.metrics?.dbReads.inc({ target: target.source, reason });
    return target;
  }

  /**
   * Whether the replica holds every commit made before `key` (a tenant's cache generation)
   * was first seen by this process. A generation is bumped after the writes it stands for
   * have committed, so an answer read from a replica that is fresh past that moment may be
   * cached under it; one read earlier may predate those writes and must not be.
   */
  freshSince(key: string): boolean {
    const now = performance.now();
    let seen = this.generationsSeen.get(key);
    if (seen === undefined) {
      if (this.generationsSeen.size >= MAX_GENERATIONS) this.generationsSeen.clear();
      seen = now;
      this.generationsSeen.set(key, seen);
    }
    return this.freshAsOf !== null && this.freshAsOf >= seen;
  }

  /** A read on the replica failed for want of the server: reads go to the primary until a poll finds it again. */
  markDown(error: unknown): void {
    if (!isUnavailableError(error)) return;
    this.up = false;
    this.report();
  }
}
