import { Prisma } from '../generated/prisma/client';

/**
 * Exact arithmetic in millionths of a unit: quantities have at most 6 decimals, so a sum of
 * them is an integer count of millionths (a number while safe, a bigint beyond), and Redis
 * and JavaScript add them exactly. Every conversion between decimals and millionths is here.
 */
export const MICRO = 1_000_000n;
export const MICRO_DECIMAL = new Prisma.Decimal(1_000_000);

/** A decimal of at most 6 places (as rollups hold them) in millionths, exactly. */
export function parseMicro(text: string): bigint {
  const negative = text.startsWith('-');
  const digits = negative ? text.slice(1) : text;
  const dot = digits.indexOf('.');
  const whole = dot === -1 ? digits : digits.slice(0, dot);
  const fraction = dot === -1 ? '' : digits.slice(dot + 1);
  if (fraction.length > 6) throw new Error(`more than 6 decimal places: ${text}`);
  const value = BigInt(whole || '0') * MICRO + BigInt(fraction.padEnd(6, '0') || '0');
  return negative ? -value : value;
}

const PLAIN_DECIMAL = /^-?\d{1,14}(\.\d{1,6})?$/;

/**
 * Counters hold millionths of a unit as integers (quantities have at most 6 decimals), so
 * Redis adds them exactly. Rounded down: usage + q may not pass the cap, and usage + q is
 * a whole number of millionths, so "≤ floor(cap)" is the same test as "≤ cap".
 */
export function floorMicro(value: Prisma.Decimal | string): bigint {
  // The hot path (every quota decision): a plain decimal of at most 6 places is exact as it is.
  if (typeof value === 'string' && PLAIN_DECIMAL.test(value)) return parseMicro(value);
  return BigInt(new Prisma.Decimal(value).times(MICRO_DECIMAL).floor().toFixed());
}

export function fromMicro(micro: bigint): Prisma.Decimal {
  return new Prisma.Decimal(micro.toString()).div(MICRO_DECIMAL);
}

/** The exact decimal string of a count of millionths (what fromMicro(x).toFixed() gives, without Decimal). */
export function formatMicro(micro: bigint | number): string {
  if (typeof micro === 'number') {
    if (!Number.isSafeInteger(micro)) return formatMicro(BigInt(micro)); // throws for a fraction, as BigInt does
    // Integer arithmetic in doubles, exact below 2^53: the remainder, then a whole multiple of a million divided.
    const abs = Math.abs(micro);
    const fraction = abs % 1_000_000;
    const whole = (abs - fraction) / 1_000_000;
    const sign = micro < 0 ? '-' : '';
    if (fraction === 0) return `${sign}${whole}`;
    return `${sign}${whole}.${String(fraction).padStart(6, '0').replace(/0+$/, '')}`;
  }
  const negative = micro < 0n;
  const digits = (negative ? -micro : micro).toString().padStart(7, '0');
  const whole = digits.slice(0, -6);
  const fraction = digits.slice(-6).replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

/** a + b exactly: a number while the sum is a safe integer, a bigint past that. */
export function addExact(a: number | bigint, b: number | bigint): number | bigint {
  if (typeof a === 'number' && typeof b === 'number') {
    const sum = a + b;
    if (Number.isSafeInteger(sum)) return sum;
  }
  return BigInt(a) + BigInt(b);
}

/** As a number when that is exact, else as a bigint. */
export function compact(value: bigint): number | bigint {
  return value <= MAX_SAFE && value >= -MAX_SAFE ? Number(value) : value;
}
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * An exact running sum of integers: added as numbers while the total stays a safe integer
 * (a year of days is thousands of additions: bigint additions allocate, and cost the API more
 * than PostgreSQL's sum did), as a bigint from the first addition that would not.
 */
export class ExactSum {
  private sum: number | bigint = 0;

  add(value: number | bigint): void {
    this.sum = addExact(this.sum, value);
  }

  value(): bigint {
    return BigInt(this.sum);
  }
}

