import { TZDate } from '@date-fns/tz';
import { localMidnight as localMidnightMs } from './analytics/buckets';

export type PeriodType = 'daily' | 'weekly' | 'monthly';

export interface Period {
  type: PeriodType;
  start: Date;
  end: Date;
}

/**
 * Periods start where analytics and the daily rollups start their days (see localMidnight
 * there): a date the zone skipped is an empty span, a repeated 00:00 is taken the second time.
 */
function localMidnight(year: number, month: number, day: number, timezone: string): Date {
  return new Date(localMidnightMs(year, month, day, timezone));
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
}

/**
 * The period of `type` containing `at`, cut at local midnights of `timezone`: a day is 23,
 * 24 or 25 hours long; a week starts on Monday; a month starts on the billing anchor's
 * day of month (the last day of a shorter month when the anchor is the 29th to 31st).
 */
export function periodContaining(type: PeriodType, at: Date, timezone: string, billingAnchor?: Date): Period {
  const local = new TZDate(at.getTime(), timezone);
  const y = local.getFullYear();
  const m = local.getMonth();
  const d = local.getDate();
  switch (type) {
    case 'daily':
      return { type, start: localMidnight(y, m, d, timezone), end: localMidnight(y, m, d + 1, timezone) };
    case 'weekly': {
      const sinceMonday = (local.getDay() + 6) % 7;
      return { type, start: localMidnight(y, m, d - sinceMonday, timezone), end: localMidnight(y, m, d - sinceMonday + 7, timezone) };
    }
    case 'monthly': {
      const anchorDay = billingAnchor ? new TZDate(billingAnchor.getTime(), timezone).getDate() : 1;
      const startDayIn = (year: number, month: number) => {
        const norm = new Date(Date.UTC(year, month, 1));
        return Math.min(anchorDay, daysInMonth(norm.getUTCFullYear(), norm.getUTCMonth()));
      };
      const [sy, sm] = d >= startDayIn(y, m) ? [y, m] : [y, m - 1];
      return {
        type,
        start: localMidnight(sy, sm, startDayIn(sy, sm), timezone),
        end: localMidnight(sy, sm + 1, startDayIn(sy, sm + 1), timezone),
      };
    }
    default: {
      const never: never = type;
      throw new Error(`unknown period type ${String(never)}`);
    }
  }
}
