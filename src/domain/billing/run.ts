import type { BillingDeps } from './deps';
import { openConnection } from './connections';
import { decideOverageFees, decideUsageReports } from './report';
import { sendOutbox } from './outbox';

export interface ReportRunOutcome {
  rowsTouched: number;
  connections: number;
  windows: number;
  fees: number;
  sent: number;
  failed: number;
  pending: number;
  [detail: string]: unknown;
}

/**
 * One billing.usage.report run: for every connected account (or one tenant's), decide what
 * Stripe must be told (usage windows, corrections, overage fees) and send the outbox. Without a
 * connected account (or without BILLING_ENCRYPTION_KEY) it does nothing.
 */
export async function runUsageReport(deps: BillingDeps, scope: { tenantId?: string | null } = {}): Promise<ReportRunOutcome> {
  const outcome: ReportRunOutcome = { rowsTouched: 0, connections: 0, windows: 0, fees: 0, sent: 0, failed: 0, pending: 0 };
  if (!deps.box) return outcome;
  const rows = await deps.prisma.billingConnection.findMany({ where: scope.tenantId ? { tenantId: scope.tenantId } : {}, select: { id: true }, orderBy: { createdAt: 'asc' } });
  for (const { id } of rows) {
    const connection = await openConnection(deps, { id });
    if (!connection) continue;
    outcome.connections += 1;
    const decided = await decideUsageReports(deps, connection);
    outcome.windows += decided.windows;
    outcome.fees += await decideOverageFees(deps, connection);
    const sent = await sendOutbox(deps, connection);
    outcome.sent += sent.sent;
    outcome.failed += sent.failed;
    outcome.pending += sent.pending;
  }
  outcome.rowsTouched = outcome.windows + outcome.fees + outcome.sent;
  return outcome;
}

/** Whether any tenant has connected Stripe (and this process can open its secrets). */
export async function hasBillingConnections(deps: Pick<BillingDeps, 'prisma' | 'box'>): Promise<boolean> {
  return deps.box !== null && (await deps.prisma.billingConnection.count()) > 0;
}
