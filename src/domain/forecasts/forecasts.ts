import type { Db } from '../../lib/db';
import type { Prisma } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { afterCursor, decodeCursor, pageOf } from '../../lib/cursor';
import type { PeriodType } from '../periods';
import type { ForecastMethod } from './models';
import { type Environment, assertLicenseInEnvironment, licensesOfEnvironment } from '../environments/environment';

type ForecastRow = Prisma.UsageForecastGetPayload<object>;

/** Longest period first: a forecast is about where a period ends, and longer periods have further to go. */
const PERIOD_PREFERENCE: readonly PeriodType[] = ['monthly', 'weekly', 'daily'];

function isoDay(date: Date | null): string | null {
  return date ? date.toISOString().slice(0, 10) : null;
}

export function presentForecast(f: ForecastRow) {
  return {
    id: f.id,
    licenseId: f.licenseId,
    usageType: f.usageType,
    periodType: f.periodType,
    periodStart: f.periodStart,
    periodEnd: f.periodEnd,
    timezone: f.timezone,
    usedSoFar: f.usedSoFar.toFixed(),
    predictedTotal: f.predictedTotal.toFixed(),
    lower: f.lowerBound.toFixed(),
    upper: f.upperBound.toFixed(),
    limit: f.limitQuantity.toFixed(),
    limitSource: f.thresholdId ? ('threshold' as const) : ('plan' as const),
    thresholdId: f.thresholdId,
    breachAt: isoDay(f.breachAt),
    method: f.method,
    historyDays: f.historyDays,
    asOf: f.asOf,
    generatedAt: f.generatedAt,
    accuracy: {
      midPeriodForecast: f.midPredictedTotal?.toFixed() ?? null,
      midPeriodMethod: f.midMethod,
      midPeriodAsOf: f.midAsOf,
      actualTotal: f.actualTotal?.toFixed() ?? null,
      absolutePercentageError: f.absolutePercentageError?.toFixed() ?? null,
      evaluatedAt: f.evaluatedAt,
    },
    createdAt: f.createdAt,
  };
}

/**
 * The forecast of a license's usage type for its current period: of the period types it is
 * limited on, the longest (or `periodType`). Before the first forecast of a new period, the
 * last one of the period before is returned (its periodEnd says so).
 */
export async function getForecast(
  db: Db,
  tenantId: string,
  environment: Environment,
  args: { licenseId: string; usageType: string; periodType?: PeriodType },
  now = new Date(),
) {
  await assertLicenseInEnvironment(db, tenantId, environment, args.licenseId);
  const rows = await db.usageForecast.findMany({
    where: { tenantId, licenseId: args.licenseId, usageType: args.usageType, ...(args.periodType ? { periodType: args.periodType } : {}) },
    orderBy: [{ periodStart: 'desc' }],
    take: 12,
  });
  const current = rows.filter((r) => r.periodEnd > now);
  const candidates = current.length ? current : rows;
  const forecast = PERIOD_PREFERENCE.map((p) => candidates.find((r) => r.periodType === p)).find((r) => r !== undefined);
  if (!forecast) {
    throw new AppError('NOT_FOUND', `no forecast for usage type "${args.usageType}" of this license: forecasts cover usage types with a limit, made daily by usage.forecast.daily`);
  }
  return presentForecast(forecast);
}

/** Newest first, keyset-paginated; `current` keeps periods that have not ended, `breaching` those whose forecast reaches the limit. */
export async function listForecasts(
  db: Db,
  tenantId: string,
  environment: Environment,
  args: { licenseId?: string; usageType?: string; periodType?: PeriodType; method?: ForecastMethod; breaching?: boolean; current?: boolean; limit: number; cursor?: string },
  now = new Date(),
) {
  const after = args.cursor ? decodeCursor(args.cursor, 'forecasts.list') : null;
  const rows = await db.usageForecast.findMany({
    where: {
      tenantId,
      licenseId: await licensesOfEnvironment(db, tenantId, environment, args.licenseId),
      ...(args.usageType ? { usageType: args.usageType } : {}),
      ...(args.periodType ? { periodType: args.periodType } : {}),
      ...(args.method ? { method: args.method } : {}),
      ...(args.breaching === undefined ? {} : { breachAt: args.breaching ? { not: null } : null }),
      ...(args.current === undefined ? {} : { periodEnd: args.current ? { gt: now } : { lte: now } }),
      ...afterCursor(after),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
  });
  const page = pageOf(rows, args.limit);
  return { items: page.items.map(presentForecast), nextCursor: page.nextCursor };
}

function mape(avg: Prisma.Decimal | null): string | null {
  return avg ? avg.toDecimalPlaces(2).toFixed() : null;
}

/**
 * Forecast accuracy over closed periods: the mean absolute percentage error (MAPE) of the
 * forecasts made closest to each period's middle, overall, per period type and per method of
 * that forecast. Periods whose actual total was 0 have no percentage error and are left out.
 */
export async function forecastAccuracy(
  db: Db,
  tenantId: string,
  environment: Environment,
  args: { licenseId?: string; usageType?: string; periodType?: PeriodType; since?: Date },
) {
  if (args.licenseId) await assertLicenseInEnvironment(db, tenantId, environment, args.licenseId);
  const where = {
    tenantId,
    absolutePercentageError: { not: null },
    licenseId: await licensesOfEnvironment(db, tenantId, environment, args.licenseId),
    ...(args.usageType ? { usageType: args.usageType } : {}),
    ...(args.periodType ? { periodType: args.periodType } : {}),
    ...(args.since ? { periodEnd: { gte: args.since } } : {}),
  } satisfies Prisma.UsageForecastWhereInput;
  const [overall, byPeriodType, byMethod] = await Promise.all([
    db.usageForecast.aggregate({ where, _avg: { absolutePercentageError: true }, _count: { _all: true } }),
    db.usageForecast.groupBy({ by: ['periodType'], where, _avg: { absolutePercentageError: true }, _count: { _all: true }, orderBy: { periodType: 'asc' } }),
    db.usageForecast.groupBy({ by: ['midMethod'], where, _avg: { absolutePercentageError: true }, _count: { _all: true }, orderBy: { midMethod: 'asc' } }),
  ]);
  return {
    periods: overall._count._all,
    mape: mape(overall._avg.absolutePercentageError),
    byPeriodType: byPeriodType.map((g) => ({ periodType: g.periodType, periods: g._count._all, mape: mape(g._avg.absolutePercentageError) })),
    byMethod: byMethod
      .filter((g) => g.midMethod !== null)
      .map((g) => ({ method: g.midMethod!, periods: g._count._all, mape: mape(g._avg.absolutePercentageError) })),
  };
}
