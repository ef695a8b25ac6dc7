import { DAY_MS } from '../../lib/time';
import { narrowCoverage, type CoverageBounds, type LicenseCoverage } from './series';

/** How far around a request's dates a license's coverage is read to be kept: later ranges near it are then served from it. */
export const COVERAGE_MARGIN_MS = 92 * DAY_MS;

interface Entry {
  generation: string;
  bounds: CoverageBounds;
  /** Null: the license's daily rows were cut in another zone somewhere in `bounds` (not kept, read each time). */
  found: LicenseCoverage | null;
}

/**
 * A license's row and the coverage facts around its recent ranges (licenseWithCoverage), kept
 * in the process per tenant, environment, license and requested zone, for one analytics cache
 * generation (a license's new zone or its deletion bumps it). What is kept is only a guess:
 * a request plans its reads from it and reads the facts again in the same statement as the
 * sums (seriesTotals' `extra`); when the two differ (a window done since, a late event's mark)
 * the answer is made again from the facts just read. So a request that finds its license here
 * costs one round trip to PostgreSQL instead of two, and is exactly as fresh.
 * Bounded: past `maxEntries` licenses, everything starts over.
 */
export class CoverageCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly maxEntries = 10_000) {}

  static key(tenantId: string, environment: string, licenseId: string, timezone: string | undefined): string {
    return `${tenantId}|${environment}|${licenseId}|${timezone ?? ''}`;
  }

  /**
   * The kept facts as they would be read around `bounds`; undefined when nothing usable is
   * kept (another generation, bounds outside what was read, a license with daily rows cut in
   * another zone: `moved` true).
   */
  get(key: string, generation: string, bounds: CoverageBounds): { found: LicenseCoverage } | { moved: true } | undefined {
    const entry = this.entries.get(key);
    if (!entry || entry.generation !== generation) return undefined;
    if (!entry.found) return { moved: true };
    const found = narrowCoverage(entry.found, entry.bounds, bounds);
    return found ? { found } : undefined;
  }

  /** The bounds to read around when a request's `bounds` are to be kept. */
  static widen(bounds: CoverageBounds): CoverageBounds {
    return { first: bounds.first - COVERAGE_MARGIN_MS, afterLast: bounds.afterLast + COVERAGE_MARGIN_MS };
  }

  /** Keeps what was read around `bounds` (a license not found is not kept: it is read each time). */
  set(key: string, generation: string, bounds: CoverageBounds, found: LicenseCoverage): void {
    if (this.entries.size >= this.maxEntries && !this.entries.has(key)) this.entries.clear();
    this.entries.set(key, { generation, bounds, found: found.coverage.foreign.length > 0 ? null : found });
  }

  /** Forgets a key whose facts turned out stale (the next request reads them afresh). */
  delete(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
