import fc from 'fast-check';
import type { LookupAddress } from 'node:dns';
import { ConfigError, loadEnv } from '../../src/env';
import {
  AddressRefusedError,
  addressRefusal,
  checkOutboundUrl,
  classifyAddress,
  guardedLookup,
  outboundPolicy,
  parseAllowlist,
  type ResolvedAddress,
} from '../../src/lib/net-guard';

const strict = outboundPolicy();

describe('classifyAddress', () => {
  // Each range at its edges: the first and last address inside, and the neighbours just outside.
  it.each([
    ['9.255.255.255', null],
    ['10.0.0.0', 'private'],
    ['10.255.255.255', 'private'],
    ['11.0.0.0', null],
    ['100.63.255.255', null],
    ['100.64.0.0', 'shared (carrier-grade NAT)'],
    ['100.127.255.255', 'shared (carrier-grade NAT)'],
    ['100.128.0.0', null],
    ['126.255.255.255', null],
    ['127.0.0.0', 'loopback'],
    ['127.255.255.255', 'loopback'],
    ['128.0.0.0', null],
    ['169.253.255.255', null],
    ['169.254.0.0', 'link-local'],
    ['169.254.169.254', 'link-local'],
    ['169.255.0.0', null],
    ['172.15.255.255', null],
    ['172.16.0.0', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.0', null],
    ['192.167.255.255', null],
    ['192.168.0.0', 'private'],
    ['192.168.255.255', 'private'],
    ['192.169.0.0', null],
    ['0.0.0.0', 'unspecified'],
    ['0.255.255.255', 'unspecified'],
    ['1.0.0.0', null],
    ['223.255.255.255', null],
    ['224.0.0.0', 'multicast'],
    ['239.255.255.255', 'multicast'],
    ['240.0.0.0', 'reserved'],
    ['255.255.255.254', 'reserved'],
    ['255.255.255.255', 'broadcast'],
    ['192.0.2.1', 'documentation'],
    ['93.184.216.34', null],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['::2', 'unspecified'], // IPv4-compatible ::0.0.0.2
    ['fe7f:ffff::', 'reserved'],
    ['fe80::', 'link-local'],
    ['febf:ffff::', 'link-local'],
    ['fbff:ffff::', 'reserved'],
    ['fc00::', 'private'],
    ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'private'],
    ['ff02::1', 'multicast'],
    ['1fff:ffff::', 'reserved'],
    ['2000::', null],
    ['2606:2800:220:1:248:1893:25c8:1946', null],
    ['2001:db8::1', 'documentation'],
    ['2001::1', 'reserved'], // Teredo
    ['3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
    ['3fff:1000::', null],
    ['4000::', 'reserved'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['::ffff:5db8:d822', null],
    ['::7f00:1', 'loopback'], // IPv4-compatible
    ['64:ff9b::a00:1', 'private'], // NAT64 of 10.0.0.1
    ['64:ff9b::5db8:d822', null], // NAT64 of a public address
    ['64:ff9b:1::1', 'private'], // NAT64 for local use
    ['2002:7f00:1::', 'loopback'], // 6to4 of 127.0.0.1
    ['2002:5db8:d822::1', null],
  ] as const)('%s is %s', (ip, cls) => {
    expect(classifyAddress(ip)).toBe(cls);
  });

  it('classes an IPv4 address and every IPv6 form that carries it alike', () => {
    fc.assert(
      fc.property(fc.ipV4(), (v4) => {
        const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number];
        const hex = (hi: number, lo: number) => ((hi << 8) | lo).toString(16);
        const cls = classifyAddress(v4);
        expect(classifyAddress(`::ffff:${v4}`)).toBe(cls);
        expect(classifyAddress(`64:ff9b::${hex(a, b)}:${hex(c, d)}`)).toBe(cls);
        expect(classifyAddress(`2002:${hex(a, b)}:${hex(c, d)}::1`)).toBe(cls);
        // IPv4-compatible addresses are deprecated: refused even when the IPv4 inside is public
        expect(classifyAddress(`::${v4}`)).not.toBeNull();
      }),
      { numRuns: 2000 },
    );
  });
});

describe('policies', () => {
  it('reads an allowlist of names, addresses and CIDR ranges, naming each bad entry', () => {
    const { hosts, errors } = parseAllowlist(' Receiver.Internal. , 10.1.2.3, 192.168.0.0/16, [fd00::1], fd00::/8 ');
    expect(errors).toEqual([]);
    expect([...hosts]).toEqual(['receiver.internal']);
    expect(parseAllowlist('10.0.0.0/33, ::/129, 10.0.0.0/, a b, 10.0.0.0/8').errors).toEqual([
      '"10.0.0.0/33" is not a CIDR range (address/prefix, prefix at most 32)',
      '"::/129" is not a CIDR range (address/prefix, prefix at most 128)',
      '"10.0.0.0/" is not a CIDR range (address/prefix, prefix at most 32)',
      '"a b" is neither a host name, an IP address nor a CIDR range',
    ]);
    expect(parseAllowlist('10.0.0.0/32, ::/128').errors).toEqual([]);
  });

  it('refuses a bad WEBHOOK_ALLOWED_HOSTS at startup, naming it', () => {
    expect(() => loadEnv({ WEBHOOK_ALLOWED_HOSTS: '10.0.0.0/40' })).toThrow(ConfigError);
    expect(() => loadEnv({ WEBHOOK_ALLOWED_HOSTS: '10.0.0.0/40' })).toThrow(/WEBHOOK_ALLOWED_HOSTS: "10.0.0.0\/40" is not a CIDR range/);
    expect(loadEnv({ WEBHOOK_ALLOWED_HOSTS: 'receiver.internal,10.0.0.0/8', WEBHOOK_ALLOW_PRIVATE: 'true' })).toMatchObject({
      WEBHOOK_ALLOWED_HOSTS: 'receiver.internal,10.0.0.0/8',
      WEBHOOK_ALLOW_PRIVATE: true,
    });
    expect(loadEnv({}).WEBHOOK_ALLOW_PRIVATE).toBe(false);
  });

  it('lets listed addresses and ranges through, and nothing next to them', () => {
    const policy = outboundPolicy({ allowedHosts: '10.1.0.0/16, 127.0.0.1' });
    expect(addressRefusal('10.1.255.255', policy)).toBeNull();
    expect(addressRefusal('10.2.0.0', policy)).toBe('private');
    expect(addressRefusal('127.0.0.1', policy)).toBeNull();
    expect(addressRefusal('::ffff:127.0.0.1', policy)).toBeNull();
    expect(addressRefusal('127.0.0.2', policy)).toBe('loopback');
    expect(addressRefusal('10.1.0.1', strict)).toBe('private');
  });

  it('WEBHOOK_ALLOW_PRIVATE opens the private ranges only, not loopback, link-local or unspecified', () => {
    const policy = outboundPolicy({ allowPrivate: true });
    for (const ip of ['10.0.0.1', '172.16.0.1', '192.168.1.1', '100.64.0.1', 'fd00::1', '64:ff9b::a00:1']) expect([ip, addressRefusal(ip, policy)]).toEqual([ip, null]);
    for (const ip of ['127.0.0.1', '::1', '169.254.169.254', 'fe80::1', '0.0.0.0', '::', '224.0.0.1']) expect(addressRefusal(ip, policy)).not.toBeNull();
  });
});

describe('checkOutboundUrl', () => {
  it.each([
    ['http://127.1/', 'points to 127.0.0.1 (loopback address)'],
    ['http://0x7f000001/', 'points to 127.0.0.1 (loopback address)'],
    ['http://2130706433/', 'points to 127.0.0.1 (loopback address)'],
    ['http://0177.0.0.1/', 'points to 127.0.0.1 (loopback address)'],
    ['http://%31%32%37.0.0.1/', 'points to 127.0.0.1 (loopback address)'],
    ['http://127.0.0.1./', 'points to 127.0.0.1 (loopback address)'],
    ['http://[0:0:0:0:0:ffff:7f00:1]/', 'points to ::ffff:7f00:1 (loopback address)'],
    ['http://LOCALHOST./', 'points to localhost (loopback address)'],
    ['http://api.localhost/', 'points to api.localhost (loopback address)'],
    ['ftp://example.com/', 'must use http or https'],
    ['http://user:pass@example.com/', 'must not carry credentials'],
    ['http://user@example.com/', 'must not carry credentials'],
    ['not a url', 'is not a valid URL'],
  ])('refuses %s', (url, reason) => {
    const check = checkOutboundUrl(url, strict);
    expect(check.ok).toBe(false);
    expect(check.ok ? '' : check.reason).toContain(reason);
  });

  it('accepts public addresses on any port and host names (resolved at connect time)', () => {
    for (const url of ['https://93.184.216.34/hook', 'http://93.184.216.34:6379/', 'http://[2606:2800:220:1:248:1893:25c8:1946]:5432/', 'https://hooks.example.com/x']) {
      expect([url, checkOutboundUrl(url, strict).ok]).toEqual([url, true]);
    }
  });

  it('lets a listed name through, localhost included', () => {
    expect(checkOutboundUrl('http://localhost:8080/', outboundPolicy({ allowedHosts: 'localhost' })).ok).toBe(true);
  });
});

describe('guardedLookup', () => {
  const dns = (answers: Record<string, ResolvedAddress[]>) => (host: string) => Promise.resolve(answers[host] ?? []);
  const lookupWith = (policy: ReturnType<typeof outboundPolicy>, answers: Record<string, ResolvedAddress[]>, all: boolean) =>
    new Promise<{ err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number }>((resolve) =>
      guardedLookup(policy, dns(answers))(Object.keys(answers)[0]!, { all }, (err, address, family) => resolve({ err, address, family })),
    );

  it('hands the socket only allowed addresses', async () => {
    const answers = { 'mixed.test': [{ address: '127.0.0.1', family: 4 }, { address: '93.184.216.34', family: 4 }, { address: '::1', family: 6 }] };
    expect((await lookupWith(strict, answers, true)).address).toEqual([{ address: '93.184.216.34', family: 4 }]);
    expect(await lookupWith(strict, answers, false)).toEqual({ err: null, address: '93.184.216.34', family: 4 });
  });

  it('refuses a name when every address it resolves to is refused, saying why only in the error object', async () => {
    const { err } = await lookupWith(strict, { 'rebound.test': [{ address: '127.0.0.1', family: 4 }, { address: '10.0.0.1', family: 4 }] }, true);
    expect(err).toBeInstanceOf(AddressRefusedError);
    expect((err as AddressRefusedError).refused).toEqual([
      { address: '127.0.0.1', cls: 'loopback' },
      { address: '10.0.0.1', cls: 'private' },
    ]);
  });

  it('lets a listed name resolve anywhere, and only that name', async () => {
    const policy = outboundPolicy({ allowedHosts: 'receiver.internal' });
    expect((await lookupWith(policy, { 'Receiver.Internal.': [{ address: '10.0.0.5', family: 4 }] }, false)).address).toBe('10.0.0.5');
    expect((await lookupWith(policy, { 'other.internal': [{ address: '10.0.0.5', family: 4 }] }, false)).err).toBeInstanceOf(AddressRefusedError);
  });

  it('answers "not found" for a name with no address', async () => {
    expect((await lookupWith(strict, { 'empty.test': [] }, false)).err?.code).toBe('ENOTFOUND');
  });
});
