import type pg from 'pg';
import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import type { Db } from '../../lib/db';
import { AppError } from '../../lib/errors';
import { type PeriodType, periodContaining } from '../periods';
import { licenseUsage } from '../usage-reader/license-usage';
import { DEFAULT_WARNING_LEVELS, PERIOD_TYPES, capOf, feeCents, levelAt, limitsFor, limitsInScope, loadLicenseLimits } from './limits';
import type { QuotaLimitsCache } from './enforcer';
import { floorMicro } from '../../lib/micro';
import { type Environment, assertLicenseInEnvironment, licensesOfEnvironment } from '../environments/environment';

type ThresholdRow = Prisma.UsageThresholdGetPayload<object>;

export function presentThreshold(t: ThresholdRow) {
  return {
    id: t.id,
    licenseId: t.licenseId,
    usageType: t.usageType,
    periodType: t.periodType,
    limitQuantity: t.limitQuantity.toFixed(),
    gracePercentage: t.gracePercentage.toFixed(),
    allowOverage: t.allowOverage,
    overageRateCents: t.overageRateCents,
    warningLevels: t.warningLevels,
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
  };
}

export interface ThresholdFields {
  limitQuantity: string;
  gracePercentage: string;
  allowOverage: boolean;
  overageRateCents: number;
  warningLevels: number[];
}

/** A threshold of a license of this tenant and environment; another's is "not found". */
async function ownThreshold(db: Db, tenantId: string, environment: Environment, id: string): Promise<ThresholdRow> {
  const threshold = await db.usageThreshold.findFirst({ where: { id, tenantId } });
  const licenseHere = threshold && (await db.license.count({ where: { id: threshold.licenseId, tenantId, environment } }));
  if (!threshold || !licenseHere) throw new AppError('NOT_FOUND', 'threshold not found');
  return threshold;
}

const sortedLevels = (levels: number[]) => [...new Set(levels)].sort((a, b) => a - b);

/** Threshold changes change the license's limits: its cached limits go. */
export interface ThresholdDeps {
  prisma: Db;
  limits: QuotaLimitsCache;
}

export async function createThreshold(
  deps: ThresholdDeps,
  tenantId: string,
  environment: Environment,
  args: { licenseId: string; usageType: string; periodType: PeriodType } & Partial<ThresholdFields> & { limitQuantity: string },
) {
  const db = deps.prisma;
  await assertLicenseInEnvironment(db, tenantId, environment, args.licenseId);
  const clash = await db.usageThreshold.findFirst({
    where: { tenantId, licenseId: args.licenseId, usageType: args.usageType, periodType: args.periodType },
  });
  if (clash) {
    throw new AppError('CONFLICT', `this license already has a ${args.periodType} threshold for "${args.usageType}" (${clash.id}); update it instead`);
  }
  try {
    const threshold = await db.usageThreshold.create({
      data: {
        tenantId,
        licenseId: args.licenseId,
        usageType: args.usageType,
        periodType: args.periodType,
        limitQuantity: args.limitQuantity,
        gracePercentage: args.gracePercentage ?? '0',
        allowOverage: args.allowOverage ?? false,
        overageRateCents: args.overageRateCents ?? 0,
        warningLevels: sortedLevels(args.warningLevels ?? [...DEFAULT_WARNING_LEVELS]),
      },
    });
    deps.limits.invalidate(threshold.licenseId);
    return presentThreshold(threshold);
  } catch (error) {
    if ((error as { code?: string }).code === 'P2002') {
      throw new AppError('CONFLICT', `this license already has a ${args.periodType} threshold for "${args.usageType}"`, undefined, { cause: error });
    }
    throw error;
  }
}

export async function listThresholds(db: Db, tenantId: string, environment: Environment, args: { licenseId?: string }) {
  const rows = await db.usageThreshold.findMany({
    where: { tenantId, licenseId: await licensesOfEnvironment(db, tenantId, environment, args.licenseId) },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: 1000,
  });
  return { items: rows.map(presentThreshold) };
}

export async function updateThreshold(deps: ThresholdDeps, tenantId: string, environment: Environment, id: string, args: Partial<ThresholdFields>) {
  await ownThreshold(deps.prisma, tenantId, environment, id);
  const threshold = await deps.prisma.usageThreshold.update({
    where: { id },
    data: { ...args, ...(args.warningLevels ? { warningLevels: sortedLevels(args.warningLevels) } : {}) },
  });
  deps.limits.invalidate(threshold.licenseId);
  return presentThreshold(threshold);
}

export async function removeThreshold(deps: ThresholdDeps, tenantId: string, environment: Environment, id: string) {
  const threshold = await ownThreshold(deps.prisma, tenantId, environment, id);
  await deps.prisma.usageThreshold.delete({ where: { id } });
  deps.limits.invalidate(threshold.licenseId);
  return { id, licenseId: threshold.licenseId, removed: true as const };
}

/**
 * Where a license stands against each limit in its current periods (its time zone): its own
 * thresholds always, and the plan's limits for every usage type it has used.
 */
export async function thresholdStatus(
  deps: { pool: pg.Pool; prisma: PrismaClient },
  tenantId: string,
  environment: Environment,
  licenseId: string,
  now = new Date(),
) {
  const limits = limitsInScope(await loadLicenseLimits(deps.prisma, tenantId, licenseId), tenantId, environment);
  if (!limits) throw new AppError('NOT_FOUND', 'license not found');
  const rows = [];
  for (const periodType of PERIOD_TYPES) {
    const inPlay = limits.planLimits.some((l) => l.periodType === periodType) || limits.thresholds.some((t) => t.periodType === periodType);
    if (!inPlay) continue;
    const period = periodContaining(periodType, now, limits.timezone, limits.billingAnchor);
    const totals = await licenseUsage(deps.pool, { tenantId, licenseId }, period);
    const usageTypes = new Set([...totals.keys(), ...limits.thresholds.filter((t) => t.periodType === periodType).map((t) => t.usageType)]);
    for (const usageType of [...usageTypes].sort()) {
      const limit = limitsFor(limits, usageType).find((l) => l.periodType === periodType);
      if (!limit) continue;
      const used = new Prisma.Decimal(totals.get(usageType) ?? '0');
      const cap = capOf(limit);
      const overage = limit.allowOverage && used.gt(cap) ? used.minus(cap).toDecimalPlaces(6, Prisma.Decimal.ROUND_DOWN) : new Prisma.Decimal(0);
      rows.push({
        thresholdId: limit.thresholdId,
        source: limit.source,
        usageType,
        periodType,
        periodStart: period.start,
        periodEnd: period.end,
        used: used.toFixed(),
        limit: limit.limit.toFixed(),
        limitWithGrace: cap.toFixed(),
        hard: !limit.allowOverage,
        percentUsed: limit.limit.isZero() ? '0' : used.div(limit.limit).times(100).toDecimalPlaces(2, Prisma.Decimal.ROUND_DOWN).toFixed(),
        level: levelAt(limit, floorMicro(used)),
        remaining: Prisma.Decimal.max(0, limit.limit.minus(used)).toFixed(),
        exceeded: used.gte(limit.limit),
        overageQuantity: overage.toFixed(),
        overageFeeCents: Number(feeCents(overage, limit.overageRateCents)),
      });
    }
  }
  return { thresholds: rows };
}
