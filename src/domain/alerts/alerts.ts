import type { Db } from '../../lib/db';
import type { Prisma } from '../../generated/prisma/client';
import { afterCursor, decodeCursor, pageOf } from '../../lib/cursor';

type AlertRow = Prisma.UsageAlertGetPayload<object>;

export function presentAlert(a: AlertRow) {
  return {
    id: a.id,
    licenseId: a.licenseId,
    thresholdId: a.thresholdId,
    usageType: a.usageType,
    periodType: a.periodType,
    periodStart: a.periodStart,
    periodEnd: a.periodEnd,
    level: a.level,
    type: a.level >= 100 ? ('usage.threshold.exceeded' as const) : ('usage.threshold.warning' as const),
    limit: a.limitQuantity.toFixed(),
    used: a.usedQuantity.toFixed(),
    detectedBy: a.detectedBy,
    createdAt: a.createdAt,
  };
}

/** Newest first, keyset-paginated. */
export async function listAlerts(
  db: Db,
  tenantId: string,
  args: { licenseId?: string; usageType?: string; minLevel?: number; limit: number; cursor?: string },
) {
  const after = args.cursor ? decodeCursor(args.cursor, 'alerts.list') : null;
  const rows = await db.usageAlert.findMany({
    where: {
      tenantId,
      ...(args.licenseId ? { licenseId: args.licenseId } : {}),
      ...(args.usageType ? { usageType: args.usageType } : {}),
      ...(args.minLevel ? { level: { gte: args.minLevel } } : {}),
      ...afterCursor(after),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
  });
  const page = pageOf(rows, args.limit);
  return { items: page.items.map(presentAlert), nextCursor: page.nextCursor };
}
