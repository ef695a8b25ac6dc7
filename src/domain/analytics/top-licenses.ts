import { Prisma } from '../../generated/prisma/client';
import { describeRange, rangeOf } from './buckets';
import { resolveScope, type AnalyticsDeps } from './usage-analytics';
import { usageSeries } from '../usage-reader/series';
import type { Environment } from '../environments/environment';

/** A tenant's licenses ranked by usage over a range (ties by events, then id), exact from rollups and raw events. */
export async function topLicenses(
  deps: AnalyticsDeps,
  tenantId: string,
  environment: Environment,
  args: { usageType?: string; startDate: string; endDate: string; timezone?: string; limit: number },
) {
  const { licenses, timezone } = await resolveScope(deps, tenantId, environment, { timezone: args.timezone });
  const range = rangeOf(args.startDate, args.endDate, 'daily', timezone);
  const series = await usageSeries(deps.pool, { tenantId, licenses, usageType: args.usageType }, [range], timezone, { groupBy: 'license' });
  const ranked = [...(series.get(0) ?? new Map<string, { quantity: Prisma.Decimal; events: bigint }>())]
    .sort(([ia, a], [ib, b]) => b.quantity.comparedTo(a.quantity) || (b.events > a.events ? 1 : b.events < a.events ? -1 : 0) || (ia < ib ? -1 : 1))
    .slice(0, args.limit);
  const details = await deps.prisma.license.findMany({
    where: { tenantId, id: { in: ranked.map(([id]) => id) } },
    select: { id: true, name: true, externalId: true, status: true, deletedAt: true },
  });
  const byId = new Map(details.map((d) => [d.id, d]));
  return {
    period: describeRange(args, timezone, range),
    items: ranked.map(([id, cell]) => ({
      licenseId: id,
      name: byId.get(id)?.name ?? null,
      externalId: byId.get(id)?.externalId ?? null,
      status: byId.get(id)?.status ?? null,
      deleted: Boolean(byId.get(id)?.deletedAt),
      quantity: cell.quantity.toFixed(),
      events: Number(cell.events),
    })),
  };
}
