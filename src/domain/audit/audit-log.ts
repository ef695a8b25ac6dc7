import type { Db } from '../../lib/db';
import { afterCursor, decodeCursor, pageOf } from '../../lib/cursor';

export interface AuditEntry {
  tenantId: string | null;
  actorKeyId: string | null;
  actorPrefix: string | null;
  action: string;
  targetType?: string | null;
  targetId?: string | null;
  outcome: 'success' | 'denied' | 'refused';
  ip?: string | null;
  userAgent?: string | null;
  metadata?: Record<string, unknown>;
}

export async function recordAudit(db: Db, entry: AuditEntry): Promise<void> {
  await db.auditLog.create({
    data: {
      ...entry,
      userAgent: entry.userAgent?.slice(0, 512) ?? null,
      metadata: (entry.metadata ?? {}) as object,
    },
  });
}

export interface ListAuditArgs {
  /** null: every tenant and the platform's own entries (admin only). */
  tenantId: string | null;
  action?: string;
  actorKeyId?: string;
  targetId?: string;
  outcome?: 'success' | 'denied' | 'refused';
  from?: Date;
  to?: Date;
  limit: number;
  cursor?: string;
}

export async function listAuditLogs(db: Db, args: ListAuditArgs) {
  const after = args.cursor ? decodeCursor(args.cursor, 'auditLogs.list') : null;
  const rows = await db.auditLog.findMany({
    where: {
      ...(args.tenantId ? { tenantId: args.tenantId } : {}),
      ...(args.action ? { action: args.action } : {}),
      ...(args.actorKeyId ? { actorKeyId: args.actorKeyId } : {}),
      ...(args.targetId ? { targetId: args.targetId } : {}),
      ...(args.outcome ? { outcome: args.outcome } : {}),
      createdAt: { gte: args.from, lt: args.to },
      ...afterCursor(after),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
  });
  return pageOf(rows, args.limit);
}
