import fc from 'fast-check';
import { countryOfAddress } from '../../src/lib/geoip';
import { classifyAddress } from '../../src/lib/net-guard';

/**
 * Addresses whose country is stable in the GeoLite2 data: allocations held for decades by the
 * same organisation in the same country (Google's resolvers, RIPE NCC's own servers, the
 * University of Tokyo and the WIDE project).
 */
const KNOWN: readonly [string, string][] = [
  ['8.8.8.8', 'US'],
  ['2001:4860:4860::8888', 'US'],
  ['193.0.6.139', 'NL'],
  ['2001:67c:2e8:22::c100:68b', 'NL'],
  ['133.11.0.1', 'JP'],
  ['2001:200::1', 'JP'],
];

describe('countryOfAddress', () => {
  it.each(KNOWN)('places %s in %s', (ip, country) => {
    expect(countryOfAddress(ip)).toBe(country);
  });

  it('reads every spelling of an address alike, and the IPv4 address an IPv6 form carries', () => {
    expect(countryOfAddress('2001:4860:4860:0:0:0:0:8888')).toBe('US');
    expect(countryOfAddress('2001:4860:4860:0000:0000:0000:0000:8888')).toBe('US');
    expect(countryOfAddress('2001:4860:4860::8888'.toUpperCase())).toBe('US');
    expect(countryOfAddress('::ffff:8.8.8.8')).toBe('US');
    expect(countryOfAddress('::FFFF:8.8.8.8')).toBe('US');
    expect(countryOfAddress('::ffff:808:808')).toBe('US');
    expect(countryOfAddress('0:0:0:0:0:ffff:c100:68b')).toBe('NL'); // 193.0.6.139
    expect(countryOfAddress('64:ff9b::808:808')).toBe('US'); // NAT64
    expect(countryOfAddress('64:ff9b::193.0.6.139')).toBe('NL');
    expect(countryOfAddress('2002:c100:68b::1')).toBe('NL'); // 6to4 of 193.0.6.139
  });

  it.each([
    '10.0.0.1',
    '172.16.5.4',
    '192.168.1.1',
    '127.0.0.1',
    '169.254.1.1',
    '100.64.0.1',
    '0.0.0.0',
    '255.255.255.255',
    '224.0.0.1',
    '198.51.100.7',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd12:3456::1',
    'ff02::1',
    '2001:db8::1',
    '::ffff:10.0.0.1',
    '::ffff:127.0.0.1',
    '64:ff9b::a00:1',
    '2002:a00:1::1', // 6to4 of 10.0.0.1
    '2002:7f00:1::1', // 6to4 of 127.0.0.1
  ])('has no country for the non-public address %s', (ip) => {
    expect(countryOfAddress(ip)).toBeNull();
  });

  it('answers null, never throws, for input that is not an address', () => {
    for (const odd of ['', ' ', 'garbage', '1.2.3', '1.2.3.4.5', '999.1.1.1', '01.2.3.4', '::::', '2001:db8::zz', '8.8.8.8 ', 'x'.repeat(100_000), '\u0000', '[::1]']) {
      expect(countryOfAddress(odd)).toBeNull();
    }
    for (const odd of [null, undefined, 42, {}, [], Symbol('x')]) {
      expect(countryOfAddress(odd as never)).toBeNull();
    }
  });

  it('answers null or a two-letter code for any string, and null for every non-public address', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), (ip) => {
        const country = countryOfAddress(ip);
        expect(country === null || /^[A-Z]{2}$/.test(country)).toBe(true);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        if (classifyAddress(ip) !== null) expect(countryOfAddress(ip)).toBeNull();
      }),
      { numRuns: 3000 },
    );
  });

  it('answers a repeated address from its memory the same as the first time', () => {
    for (let i = 0; i < 3; i++) {
      for (const [ip, country] of KNOWN) expect(countryOfAddress(ip)).toBe(country);
      expect(countryOfAddress('10.0.0.1')).toBeNull();
    }
  });
});
