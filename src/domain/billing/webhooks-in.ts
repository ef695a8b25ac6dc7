import { isUuid } from '../../lib/uuid';
import type { BillingDeps } from './deps';
import { openConnection } from './connections';

/**
 * Stripe's webhooks to a tenant: unauthenticated, so nothing is believed before the signature
 * over the raw body verifies with one of the tenant's webhook secrets (300 s tolerance). Each
 * event is handled once (its id is recorded in the transaction that acts on it). A customer no
 * license is linked to is recorded and acknowledged, and changes nothing.
 */

export const SIGNATURE_TOLERANCE_SECONDS = 300;

export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
}

const SUBSCRIPTION_STATUS: Record<string, 'ACTIVE' | 'SUSPENDED' | 'EXPIRED'> = {
  active: 'ACTIVE',
  trialing: 'ACTIVE',
  past_due: 'SUSPENDED',
  unpaid: 'SUSPENDED',
  paused: 'SUSPENDED',
  canceled: 'EXPIRED',
  incomplete_expired: 'EXPIRED',
};

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const str = (v: unknown): string | null => (typeof v === 'string' && v.length <= 255 ? v : null);
const list = (v: unknown): Obj[] => (Array.isArray(obj(v).data) ? (obj(v).data as unknown[]).map(obj) : []);

export async function receiveStripeWebhook(deps: BillingDeps, tenantId: string, rawBody: Buffer, signature: string | undefined): Promise<WebhookAnswer> {
  const refuse = (message: string): WebhookAnswer => ({ status: 400, body: { error: { message, code: 'BAD_REQUEST' } } });
  if (!isUuid(tenantId)) return refuse('unknown tenant: the path must be /api/stripe/webhook/<tenant id>');
  if (!signature) return refuse('missing Stripe-Signature header');
  const connections = await deps.prisma.billingConnection.findMany({ where: { tenantId }, select: { id: true } });
  if (connections.length === 0) return refuse('no Stripe account is connected for this tenant');
  type VerifiedEvent = { id: string; type: string; livemode: boolean; data: { object: unknown } };
  let event = null as VerifiedEvent | null;
  let mode: 'live' | 'test' | null = null;
  for (const { id } of connections) {
    const connection = await openConnection(deps, { id });
    if (!connection) continue;
    try {
      event = deps.gateway.verifyWebhook(rawBody, signature, connection.webhookSecret, SIGNATURE_TOLERANCE_SECONDS) as unknown as VerifiedEvent;
      mode = connection.mode;
      break;
    } catch {
      // not this secret
    }
  }
  if (!event || !mode) return refuse('signature verification failed (wrong secret, tampered body, or older than 300 s)');
  const eventId = str(event.id);
  const type = str(event.type);
  if (!eventId || !type) return refuse('not a Stripe event');

  const seen = await deps.prisma.stripeWebhookEvent.findUnique({ where: { tenantId_eventId: { tenantId, eventId } } });
  if (seen) return { status: 200, body: { received: true, duplicate: true, outcome: seen.outcome } };

  const object = obj(event.data?.object);
  const handled = await deps.prisma.$transaction(async (tx) => {
    let outcome = 'ignored';
    let detail: Obj = {};
    const licenseOfCustomer = async () => {
      const customer = str(object.customer);
      if (!customer) return null;
      return tx.license.findFirst({ where: { tenantId, environment: mode!, stripeCustomerId: customer, deletedAt: null }, select: { id: true } });
    };
    if (type.startsWith('customer.subscription.')) {
      const license = await licenseOfCustomer();
      if (!license) {
        outcome = 'unknown_customer';
      } else {
        const status = type === 'customer.subscription.deleted' ? 'EXPIRED' : SUBSCRIPTION_STATUS[str(object.status) ?? ''];
        const prices = list(object.items).map((item) => str(obj(item.price).id)).filter((p): p is string => p !== null);
        const mapped = prices.length ? await tx.billingPlanPrice.findFirst({ where: { tenantId, mode, stripePriceId: { in: prices } } }) : null;
        const plan = mapped ? await tx.plan.findUnique({ where: { code: mapped.planCode } }) : null;
        await tx.license.update({ where: { id: license.id }, data: { ...(status ? { status } : {}), ...(plan ? { planId: plan.id } : {}) } });
        outcome = 'license_updated';
        detail = { licenseId: license.id, status: status ?? null, plan: plan?.code ?? null };
      }
    } else if (type === 'invoice.created' || type === 'invoice.finalized') {
      const license = await licenseOfCustomer();
      const invoiceId = str(object.id);
      if (!license || !invoiceId) {
        outcome = 'unknown_customer';
      } else {
        const overageIds = list(object.lines).map((line) => str(obj(line.metadata).tally_overage_id)).filter((id): id is string => id !== null && isUuid(id));
        const overages = await tx.usageOverage.updateMany({ where: { tenantId, licenseId: license.id, id: { in: overageIds } }, data: { stripeInvoiceId: invoiceId } });
        const start = Number(object.period_start);
        const end = Number(object.period_end);
        let windows = 0;
        if (Number.isFinite(start) && Number.isFinite(end) && end > start) {
          windows = (
            await tx.billingReportWindow.updateMany({
              where: { tenantId, licenseId: license.id, stripeInvoiceId: null, hour: { gte: new Date(start * 1000), lt: new Date(end * 1000) } },
              data: { stripeInvoiceId: invoiceId },
            })
          ).count;
        }
        outcome = 'invoice_recorded';
        detail = { licenseId: license.id, invoiceId, overages: overages.count, windows };
      }
    } else if (type === 'billing.meter.error_report_triggered') {
      outcome = 'meter_error_recorded';
      const summary = obj(object.reason);
      detail = { meter: str(obj(object.meter).id) ?? str(object.meter), errorCount: Number(summary.error_count) || null, errorTypes: Array.isArray(summary.error_types) ? summary.error_types.slice(0, 10) : [] };
    }
    // recorded in the mode of the account whose secret verified it (Stripe's own livemode says the same)
    await tx.stripeWebhookEvent.create({ data: { tenantId, eventId, type, livemode: mode === 'live', outcome, detail: JSON.parse(JSON.stringify(detail)) as object } });
    return { outcome, detail };
  }).catch((error: unknown) => {
    // The same event delivered twice at once: the other delivery recorded it.
    if ((error as { code?: string }).code === 'P2002') return { outcome: 'duplicate', detail: {} };
    throw error;
  });
  if (handled.outcome === 'duplicate') return { status: 200, body: { received: true, duplicate: true } };
  // A new plan means new limits: the license's cached limits are read again on its next event.
  const updated = (handled.detail as { licenseId?: unknown }).licenseId;
  if (handled.outcome === 'license_updated' && typeof updated === 'string') deps.limits.invalidate(updated);
  return { status: 200, body: { received: true, duplicate: false, ...handled } };
}
