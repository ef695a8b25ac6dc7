import type { Db } from '../../lib/db';
import type { OverageStatus, Prisma } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { afterCursor, decodeCursor, pageOf } from '../../lib/cursor';

type OverageRow = Prisma.UsageOverageGetPayload<object>;

export function presentOverage(o: OverageRow) {
  return {
    id: o.id,
    licenseId: o.licenseId,
    thresholdId: o.thresholdId,
    usageType: o.usageType,
    periodType: o.periodType,
    periodStart: o.periodStart,
    periodEnd: o.periodEnd,
    quantity: o.quantity.toFixed(),
    rateCents: o.rateCents,
    feeCents: Number(o.feeCents),
    status: o.status,
    final: o.final,
    decidedAt: o.decidedAt,
    createdAt: o.createdAt,
    updatedAt: o.updatedAt,
  };
}

export async function listOverages(
  db: Db,
  tenantId: string,
  args: { licenseId?: string; status?: OverageStatus; limit: number; cursor?: string },
) {
  const after = args.cursor ? decodeCursor(args.cursor, 'overages.list') : null;
  const rows = await db.usageOverage.findMany({
    where: {
      tenantId,
      ...(args.licenseId ? { licenseId: args.licenseId } : {}),
      ...(args.status ? { status: args.status } : {}),
      ...afterCursor(after),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
  });
  const page = pageOf(rows, args.limit);
  return { items: page.items.map(presentOverage), nextCursor: page.nextCursor };
}

/**
 * DETECTED → APPROVED (to be billed) or WAIVED (never billed). Deciding twice the same way is
 * a no-op; changing a decision, or deciding a BILLED overage, is a conflict.
 */
export async function decideOverage(db: Db, tenantId: string, id: string, decision: 'APPROVED' | 'WAIVED', actorKeyId: string | null) {
  const overage = await db.usageOverage.findFirst({ where: { id, tenantId } });
  if (!overage) throw new AppError('NOT_FOUND', 'overage not found');
  if (overage.status === decision) return presentOverage(overage);
  if (overage.status !== 'DETECTED') {
    throw new AppError('CONFLICT', `overage is already ${overage.status}`);
  }
  const updated = await db.usageOverage.updateMany({
    where: { id, tenantId, status: 'DETECTED' },
    data: { status: decision, decidedAt: new Date(), decidedByKeyId: actorKeyId },
  });
  if (updated.count === 0) throw new AppError('CONFLICT', 'overage was decided concurrently');
  return presentOverage(await db.usageOverage.findFirstOrThrow({ where: { id, tenantId } }));
}
