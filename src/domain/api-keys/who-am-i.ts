import type pg from 'pg';
import type { Db } from '../../lib/db';
import { AppError } from '../../lib/errors';
import { isoInZone, localDateOf, localMidnight } from '../analytics/buckets';
import { seriesTotals } from '../usage-reader/series';

export interface WhoAmIDeps {
  prisma: Db;
  pool: pg.Pool;
  /** Uses counted in this process and not written yet (the authenticator writes them every few seconds). */
  pendingLastUse?: (keyId: string) => Date | undefined;
}

/**
 * What a key is and what its tenant used this month: what an SDK shows on start and what
 * support asks first. Never the key's hash. `tenantId` is the tenant the call works in (for
 * an admin key, the one named by X-Tally-Tenant, or null). The month is the current calendar
 * month in the tenant's time zone; usage counts the tenant's licenses of the key's
 * environment (deleted ones too: their usage happened), exactly, as analytics.usage reads it.
 */
export async function whoAmI(deps: WhoAmIDeps, keyId: string, tenantId: string | null, now = new Date()) {
  const [key, tenant] = await Promise.all([
    deps.prisma.apiKey.findUnique({
      where: { id: keyId },
      select: { id: true, prefix: true, name: true, role: true, environment: true, userEmail: true, organization: true, createdAt: true, lastUsedAt: true },
    }),
    tenantId ? deps.prisma.tenant.findUnique({ where: { id: tenantId }, select: { id: true, name: true, slug: true, timezone: true } }) : null,
  ]);
  // The key authenticated a moment ago; it can only be missing if it was deleted in between.
  if (!key) throw new AppError('UNAUTHORIZED', 'unknown API key');
  const pending = deps.pendingLastUse?.(keyId);
  const lastUsedAt = pending && (!key.lastUsedAt || pending > key.lastUsedAt) ? pending : key.lastUsedAt;

  let usage = null;
  if (tenant) {
    const zone = tenant.timezone;
    const [year, month] = localDateOf(now.getTime(), zone).split('-').map(Number) as [number, number];
    const span = { start: localMidnight(year, month - 1, 1, zone), end: localMidnight(year, month, 1, zone) };
    const { rows: licenses } = await deps.pool.query<{ id: string; timezone: string }>(
      'SELECT id, timezone FROM licenses WHERE tenant_id = $1 AND environment = $2::api_key_environment',
      [tenant.id, key.environment],
    );
    const totals = await seriesTotals(deps.pool, { tenantId: tenant.id, licenses }, [span], zone);
    usage = {
      period: {
        month: `${year}-${String(month).padStart(2, '0')}`,
        timezone: zone,
        start: isoInZone(span.start, zone),
        end: isoInZone(span.end, zone),
      },
      environment: key.environment,
      byUsageType: [...totals.byUsageType]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([usageType, c]) => ({ usageType, quantity: c.quantity, events: Number(c.events) })),
    };
  }
  return { ...key, lastUsedAt, tenant: tenant ? { id: tenant.id, name: tenant.name, slug: tenant.slug, timezone: tenant.timezone } : null, usage };
}
