import type pg from 'pg';
import type { PrismaClient } from '../../generated/prisma/client';
import { type Period, type PeriodType, periodContaining } from '../periods';
import { licenseUsage } from '../usage-reader/license-usage';
import type { LevelCrossing } from './enforcer';
import { type LicenseLimits, PERIOD_TYPES, levelMicro, limitsFor, loadLicenseLimits } from './limits';
import type { ReactionDeps } from './reactions';
import { recordLevelCrossings } from '../alerts/alerts';
import { upsertOverage } from '../overages/overages';
import { floorMicro } from '../../lib/micro';

/** The periods a check covers: the current one and the one just before it (it may have closed since the last check). */
function periodsToCheck(type: PeriodType, now: Date, limits: LicenseLimits): { period: Period; closed: boolean }[] {
  const current = periodContaining(type, now, limits.timezone, limits.billingAnchor);
  const previous = periodContaining(type, new Date(current.start.getTime() - 1), limits.timezone, limits.billingAnchor);
  return [
    { period: previous, closed: true },
    { period: current, closed: false },
  ];
}

/**
 * One license: every level reached in its current and previous periods gets its alert (if
 * ingestion missed it), every overage is recomputed (provisional) or finalized (closed period).
 */
export async function checkLicenseThresholds(deps: ReactionDeps, limits: LicenseLimits, now: Date) {
  const result = { alerts: 0, overages: 0 };
  const periodTypes = PERIOD_TYPES.filter(
    (p) => limits.planLimits.some((l) => l.periodType === p) || limits.thresholds.some((t) => t.periodType === p),
  );
  for (const type of periodTypes) {
    for (const { period, closed } of periodsToCheck(type, now, limits)) {
      const totals = await licenseUsage(deps.pool, { tenantId: limits.tenantId, licenseId: limits.licenseId }, period);
      const crossings: LevelCrossing[] = [];
      for (const [usageType, used] of totals) {
        const limit = limitsFor(limits, usageType).find((l) => l.periodType === type);
        if (!limit) continue;
        const usedMicro = floorMicro(used);
        for (const level of limit.levels) {
          if (levelMicro(limit, level) <= usedMicro) {
            crossings.push({ tenantId: limits.tenantId, environment: limits.environment, licenseId: limits.licenseId, usageType, period, limit, level, used });
          }
        }
        if (limit.allowOverage) {
          const outcome = await upsertOverage(
            deps,
            { tenantId: limits.tenantId, environment: limits.environment, licenseId: limits.licenseId, usageType, period, limit, used },
            closed,
          );
          if (outcome !== 'unchanged') result.overages += 1;
        }
      }
      result.alerts += await recordLevelCrossings(deps, crossings, 'scheduled');
    }
  }
  return result;
}

/** Every active license that has limits (from its plan or its own thresholds). */
export async function activeLimitedLicenses(pool: pg.Pool): Promise<{ id: string; tenant_id: string }[]> {
  const { rows } = await pool.query<{ id: string; tenant_id: string }>(
    `SELECT l.id, l.tenant_id FROM licenses l
      WHERE l.status = 'ACTIVE' AND l.deleted_at IS NULL
        AND (EXISTS (SELECT 1 FROM plan_limits p WHERE p.plan_id = l.plan_id)
             OR EXISTS (SELECT 1 FROM usage_thresholds t WHERE t.tenant_id = l.tenant_id AND t.license_id = l.id))
      ORDER BY l.tenant_id, l.id`,
  );
  return rows;
}

export async function checkAllThresholds(deps: ReactionDeps & { prisma: PrismaClient }, now = new Date()) {
  const rows = await activeLimitedLicenses(deps.pool);
  const total = { licenses: 0, alerts: 0, overages: 0 };
  for (const row of rows) {
    const limits = await loadLicenseLimits(deps.prisma, row.tenant_id, row.id);
    if (!limits) continue;
    const r = await checkLicenseThresholds(deps, limits, now);
    total.licenses += 1;
    total.alerts += r.alerts;
    total.overages += r.overages;
  }
  return { rowsTouched: total.alerts + total.overages, ...total };
}
