import { randomBytes } from 'node:crypto';
import { FakeStripe } from './fake-stripe';
import type { TestApp } from './harness';
import { recomputeHourlyRollups } from '../../src/domain/rollups/recompute';
import { HOUR_MS } from '../../src/lib/time';

export const ENCRYPTION_KEY = 'a'.repeat(64);

/**
 * Starts a fake Stripe before the file's TestApp starts and points the app at it (TestApp reads
 * process.env in its beforeAll, so this must be called before useTestApp). Billing is enabled
 * with a test encryption key, short timeouts and fast retries.
 */
export function useFakeStripe(): { readonly fake: FakeStripe } {
  const holder: { fake?: FakeStripe } = {};
  const saved: Record<string, string | undefined> = {};
  const settings: Record<string, string> = {
    BILLING_ENCRYPTION_KEY: ENCRYPTION_KEY,
    BILLING_STRIPE_TIMEOUT_MS: '400',
    BILLING_RETRY_BASE_MS: '20',
    BILLING_STRIPE_RPS: '2000',
    BILLING_SEND_BUDGET_MS: '60000',
  };
  beforeAll(async () => {
    holder.fake = await FakeStripe.start();
    for (const [k, v] of Object.entries({ ...settings, STRIPE_API_BASE: holder.fake.baseUrl })) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
  });
  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await holder.fake?.close();
  });
  return {
    get fake() {
      if (!holder.fake) throw new Error('fake Stripe used before it started');
      return holder.fake;
    },
  };
}

export const secretKey = (mode: 'test' | 'live' = 'live') => `sk_${mode}_${randomBytes(12).toString('hex')}`;
export const webhookSecret = () => `whsec_${randomBytes(16).toString('hex')}`;
export const customerId = () => `cus_${randomBytes(8).toString('hex')}`;

/** The start of the UTC hour `hoursAgo` hours before now. */
export function hourAgo(hoursAgo: number): Date {
  return new Date(Math.floor(Date.now() / HOUR_MS) * HOUR_MS - hoursAgo * HOUR_MS);
}

export async function rollUp(app: TestApp, start: Date, end: Date, licenseIds?: string[]) {
  await recomputeHourlyRollups(app.services.db.pool, { start, end, licenseIds });
}

/** Tally's rollups of a tenant's licenses with customers, keyed `customer|usageType|hourSeconds`. */
export async function rollupTotals(app: TestApp, tenantId: string): Promise<Map<string, string>> {
  const { rows } = await app.services.db.pool.query<{ customer: string; usage_type: string; hour: Date; quantity: string }>(
    `SELECT l.stripe_customer_id AS customer, h.usage_type, h.hour, h.quantity::text FROM usage_rollups_hourly h
     JOIN licenses l ON l.id = h.license_id WHERE h.tenant_id = $1 AND l.stripe_customer_id IS NOT NULL AND h.quantity <> 0`,
    [tenantId],
  );
  return new Map(rows.map((r) => [`${r.customer}|${r.usage_type}|${r.hour.getTime() / 1000}`, String(Number(r.quantity))]));
}
