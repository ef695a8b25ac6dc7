/**
 * Numbers in the browser's locale. Quantities arrive as exact decimal strings; they are grouped
 * and given the locale's decimal sign without passing through a float, so every digit the API
 * sent is shown.
 */
const locale = typeof navigator !== 'undefined' ? navigator.language : 'en';
const integerFormat = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
const decimalSign = new Intl.NumberFormat(locale).formatToParts(1.5).find((p) => p.type === 'decimal')?.value ?? '.';
const minusSign = new Intl.NumberFormat(locale).formatToParts(-1).find((p) => p.type === 'minusSign')?.value ?? '-';

export function formatDecimal(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  const text = typeof value === 'number' ? String(value) : value.trim();
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return text;
  const [, sign, whole, fraction] = m;
  const grouped = integerFormat.format(BigInt(whole!));
  return `${sign ? minusSign : ''}${grouped}${fraction ? decimalSign + fraction : ''}`;
}

export function formatCount(value: number): string {
  return integerFormat.format(value);
}

export function formatPercent(value: number, digits = 1): string {
  return new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: digits }).format(value);
}

export function formatCents(cents: number, currency = 'USD'): string {
  return new Intl.NumberFormat(locale, { style: 'currency', currency }).format(cents / 100);
}

/** An instant shown in a named zone (the license's), with the zone's short name. */
export function formatInstant(iso: string | null | undefined, timeZone?: string): string {
  if (!iso) return '—';
  return new Intl.DateTimeFormat(locale, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZone, timeZoneName: 'short' }).format(new Date(iso));
}

/** used / limit as a fraction, from the decimal strings (display only: the numbers shown stay exact). */
export function ratio(used: string, limit: string | null): number | null {
  if (limit === null) return null;
  const l = Number(limit);
  return l > 0 ? Number(used) / l : null;
}

/** The warning level a share of the limit has reached: 0, 50, 80, 95 or 100. */
export function levelOf(fraction: number): 0 | 50 | 80 | 95 | 100 {
  const pct = fraction * 100;
  return pct >= 100 ? 100 : pct >= 95 ? 95 : pct >= 80 ? 80 : pct >= 50 ? 50 : 0;
}

/** YYYY-MM-DD of a date in a zone. */
export function localDate(at: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(at);
}

export function addDays(date: string, days: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}
