import fc from 'fast-check';
import { Prisma } from '../../src/generated/prisma/client';
import { floorMicro, formatMicro, fromMicro } from '../../src/lib/micro';
import { capOf, feeCents, levelAt, levelMicro, levelsOf, type EffectiveLimit } from '../../src/domain/quotas/limits';

const limitOf = (limit: string, grace = '0', levels = [50, 80, 95]): EffectiveLimit => ({
  periodType: 'daily',
  limit: new Prisma.Decimal(limit),
  gracePercentage: new Prisma.Decimal(grace),
  allowOverage: false,
  overageRateCents: 0,
  levels: levelsOf(levels),
  thresholdId: null,
  source: 'threshold',
});

it('formats millionths exactly as Decimal does', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }), (micro) => {
      expect(formatMicro(micro)).toBe(fromMicro(micro).toFixed());
    }),
  );
  expect([formatMicro(0n), formatMicro(1n), formatMicro(1_500_000n), formatMicro(10_000_000n)]).toEqual(['0', '0.000001', '1.5', '10']);
});

it('round-trips quantities of at most 6 decimals through millionths', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 10n ** 15n }), (micro) => {
      expect(floorMicro(formatMicro(micro))).toBe(micro);
    }),
  );
});

it('caps at limit × (1 + grace%), rounded down to a millionth', () => {
  expect(capOf(limitOf('10', '20')).toFixed()).toBe('12');
  expect(floorMicro(capOf(limitOf('0.000003', '50')))).toBe(4n); // 0.0000045 → 4 millionths
});

it('reaches a level at limit × level%, rounded up to a millionth', () => {
  const limit = limitOf('0.000003');
  expect(levelMicro(limit, 50)).toBe(2n); // 1.5 millionths → 2
  expect(levelsOf([95, 50, 50, 100, 0, 120])).toEqual([50, 95, 100]);
  const hundred = limitOf('100');
  expect([levelAt(hundred, floorMicro('49.999999')), levelAt(hundred, floorMicro('50')), levelAt(hundred, floorMicro('100'))]).toEqual([0, 50, 100]);
});

it('prices overage in whole cents, half up', () => {
  expect(feeCents(new Prisma.Decimal('4.5'), 25)).toBe(113n);
  expect(feeCents(new Prisma.Decimal('0.01'), 49)).toBe(0n);
  expect(feeCents(new Prisma.Decimal('0.01'), 50)).toBe(1n);
});

describe('floorMicro', () => {
  it('answers exactly what Decimal arithmetic answers, on the fast path for plain decimals and off it', () => {
    const values = ['0', '1', '-1', '0.000001', '-0.000001', '2.5', '0.75', '123456789.123456', '-3.000001', '99999999999999999999.999999',
      '1e3', '1.0000005', '-1.0000005', '0.1234567', '+2', '.5'];
    for (const v of values) {
      expect(floorMicro(v)).toBe(BigInt(new Prisma.Decimal(v).times(1_000_000).floor().toFixed()));
    }
  });
});
