import type pg from 'pg';
import { usageSeries } from './series';

/**
 * Exact usage of one license over [start, end), per usage type: daily rollups for final
 * local days (when `timezone`, the license's zone, is given and the range is cut in it),
 * hourly rollups for the whole hours that are rolled up (and not marked by a late event
 * since), raw events for everything else. A new event counts as soon as it is committed.
 */
export async function licenseUsage(
  pool: pg.Pool,
  scope: { tenantId: string; licenseId: string; usageType?: string; timezone?: string },
  range: { start: Date; end: Date },
): Promise<Map<string, string>> {
  const series = await usageSeries(
    pool,
    { tenantId: scope.tenantId, licenses: [{ id: scope.licenseId, timezone: scope.timezone ?? '' }], usageType: scope.usageType },
    [{ start: range.start.getTime(), end: range.end.getTime() }],
    scope.timezone ?? 'UTC',
    { allowDaily: scope.timezone !== undefined },
  );
  return new Map([...(series.get(0) ?? new Map())].map(([type, cell]) => [type, cell.quantity.toFixed()]));
}
