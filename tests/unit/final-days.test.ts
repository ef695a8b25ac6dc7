import fc from 'fast-check';
import { ExactSum, addExact, compact, formatMicro, parseMicro } from '../../src/lib/micro';

describe('exact sums of final days', () => {
  it('adds numbers and bigints exactly, past the safe integers too', () => {
    const big = BigInt(Number.MAX_SAFE_INTEGER);
    const value = fc.oneof(
      fc.integer(),
      fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1, -1),
      fc.bigInt({ min: -(big * 4n), max: big * 4n }),
    );
    fc.assert(
      fc.property(fc.array(value, { maxLength: 60 }), (values) => {
        const sum = new ExactSum();
        for (const v of values) sum.add(typeof v === 'bigint' ? compact(v) : v);
        expect(sum.value()).toBe(values.reduce<bigint>((a, v) => a + BigInt(v), 0n));
      }),
      { numRuns: 5_000 },
    );
  });

  it('adds two values exactly with addExact: a number while safe, a bigint from the first sum past it', () => {
    const big = BigInt(Number.MAX_SAFE_INTEGER);
    const value = fc.oneof(fc.integer(), fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1, -1, 0), fc.bigInt({ min: -(big * 4n), max: big * 4n }).map(compact));
    fc.assert(
      fc.property(value, value, (a, b) => {
        const sum = addExact(a, b);
        expect(BigInt(sum)).toBe(BigInt(a) + BigInt(b));
        expect(typeof sum).toBe(typeof a === 'number' && typeof b === 'number' && Number.isSafeInteger(a + b) ? 'number' : 'bigint');
      }),
      { numRuns: 5_000 },
    );
    expect(addExact(Number.MAX_SAFE_INTEGER, 0)).toBe(Number.MAX_SAFE_INTEGER);
    expect(addExact(Number.MAX_SAFE_INTEGER, 1)).toBe(big + 1n);
  });

  it('writes a number of millionths as the bigint of the same value is written, up to and past the safe integers', () => {
    const safe = fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.maxSafeInteger().map((n) => -n), fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 999_999, 1_000_000, -1_000_001, 0));
    fc.assert(fc.property(safe, (n) => formatMicro(n) === formatMicro(BigInt(n))), { numRuns: 10_000 });
    // Past the safe integers a double is still an integer here: written through BigInt, exactly.
    expect(formatMicro(2 ** 53)).toBe(formatMicro(2n ** 53n));
    expect(formatMicro(Number.MAX_SAFE_INTEGER)).toBe('9007199254.740991');
    expect(() => formatMicro(0.5)).toThrow();
  });

  it('reads and writes decimals of up to 6 places as millionths, exactly', () => {
    const decimal = fc
      .tuple(fc.bigInt({ min: 0n, max: 10n ** 24n }), fc.integer({ min: 0, max: 999_999 }), fc.boolean())
      .map(([whole, fraction, negative]) => ({ micro: (negative ? -1n : 1n) * (whole * 1_000_000n + BigInt(fraction)) }));
    fc.assert(fc.property(decimal, ({ micro }) => parseMicro(formatMicro(micro)) === micro), { numRuns: 5_000 });
    expect([formatMicro(12_500_000n), formatMicro(3_000_000n), formatMicro(1n), formatMicro(0n), formatMicro(-1_500_000n)]).toEqual(['12.5', '3', '0.000001', '0', '-1.5']);
    expect([parseMicro('12.5'), parseMicro('3'), parseMicro('0.000001'), parseMicro('123456789012345678901234.123456')]).toEqual([
      12_500_000n,
      3_000_000n,
      1n,
      123456789012345678901234123456n,
    ]);
    expect(() => parseMicro('0.0000001')).toThrow('more than 6 decimal places');
  });
});
