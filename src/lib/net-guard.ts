import { BlockList, SocketAddress, isIP, type LookupFunction } from 'node:net';
import { lookup as dnsLookup } from 'node:dns/promises';

/**
 * Which addresses an outbound request (a webhook) may reach. By default only public unicast
 * addresses: a tenant-supplied URL must not make this server talk to itself, its database or
 * Redis, the cloud metadata service or the private network it sits in (SSRF). Ports are not
 * restricted: on a public address any port is the receiver's business, and every internal
 * service is already out of reach by its address.
 */

/** Why an address is refused; `private` ones are let through by `allowPrivate`. */
export type AddressClass =
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'shared (carrier-grade NAT)'
  | 'link-local'
  | 'multicast'
  | 'broadcast'
  | 'documentation'
  | 'reserved';

const PRIVATE_NETWORK_CLASSES: ReadonlySet<AddressClass> = new Set(['private', 'shared (carrier-grade NAT)']);

/** IANA's special-purpose IPv4 ranges that are not globally reachable; first match names the class. */
const IPV4_RANGES: readonly [string, number, AddressClass][] = [
  ['255.255.255.255', 32, 'broadcast'],
  ['0.0.0.0', 8, 'unspecified'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared (carrier-grade NAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, 'reserved'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'reserved'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];

const IPV6_RANGES: readonly [string, number, AddressClass][] = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['fe80::', 10, 'link-local'],
  ['fc00::', 7, 'private'], // unique-local
  ['fec0::', 10, 'reserved'], // site-local, deprecated
  ['ff00::', 8, 'multicast'],
  ['100::', 64, 'reserved'], // discard-only
  ['64:ff9b:1::', 48, 'private'], // NAT64 for local use
  ['2001:db8::', 32, 'documentation'],
  ['2001::', 23, 'reserved'], // IETF protocol assignments, Teredo among them
  ['3fff::', 20, 'documentation'],
  ['5f00::', 16, 'reserved'], // SRv6 segment identifiers
];

/**
 * IPv6 forms that carry an IPv4 address: an IPv4 address refused as such is refused in each
 * of them too (::ffff:127.0.0.1 reaches 127.0.0.1; 64:ff9b::10.0.0.1 reaches 10.0.0.1 through
 * a NAT64 gateway; 2002:7f00:1:: is 6to4 for 127.0.0.1).
 */
function embeddedForms(v4: string, prefix: number): [string, number][] {
  const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number];
  const hex = (hi: number, lo: number) => ((hi << 8) | lo).toString(16);
  return [
    [`::ffff:${v4}`, 96 + prefix],
    [`::${v4}`, 96 + prefix],
    [`64:ff9b::${v4}`, 96 + prefix],
    [`2002:${hex(a, b)}:${hex(c, d)}::`, 16 + prefix],
  ];
}

/** One list per range, in order: the first that holds an address names its class. */
const RANGES: readonly { cls: AddressClass; list: BlockList }[] = [
  // IPv6 first: its exact entries (::, ::1) must name the class before an embedded IPv4 form (::0.0.0.1) does.
  ...IPV6_RANGES.map(([net, prefix, cls]) => {
    const list = new BlockList();
    list.addSubnet(net, prefix, 'ipv6');
    return { cls, list };
  }),
  ...IPV4_RANGES.map(([net, prefix, cls]) => {
    const list = new BlockList();
    list.addSubnet(net, prefix, 'ipv4');
    for (const [v6, p] of embeddedForms(net, prefix)) list.addSubnet(v6, p, 'ipv6');
    return { cls, list };
  }),
];

/** IPv6 outside global unicast (2000::/3) and the IPv4-carrying forms checked above is reserved. */
const IPV6_ROUTABLE = new BlockList();
IPV6_ROUTABLE.addSubnet('2000::', 3, 'ipv6');
IPV6_ROUTABLE.addSubnet('::ffff:0:0', 96, 'ipv6');
IPV6_ROUTABLE.addSubnet('64:ff9b::', 96, 'ipv6');

/** IPV4_RANGES as numbers: [first, last, class]. */
const IPV4_NUMERIC: readonly [number, number, AddressClass][] = IPV4_RANGES.map(([net, prefix, cls]) => {
  const first = ipv4Number(net)!;
  return [first, first + 2 ** (32 - prefix) - 1, cls];
});

/** A dotted quad in plain decimal (what isIP accepts as IPv4) as a number, or null. */
function ipv4Number(ip: string): number | null {
  const parts = ip.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return null;
    n = n * 256 + Number(part);
  }
  return n;
}

/** The class of a non-public address, or null for a public one. `ip` is a literal IPv4 or IPv6 address. */
export function classifyAddress(ip: string): AddressClass | null {
  // IPv4 by arithmetic: a BlockList check needs a SocketAddress, whose construction costs
  // microseconds, and a country lookup runs this for every new address at ingest. A unit test
  // holds it to the BlockList answer (the same address in its IPv4-mapped IPv6 form).
  const v4 = ipv4Number(ip);
  if (v4 !== null) {
    for (const [first, last, cls] of IPV4_NUMERIC) if (v4 >= first && v4 <= last) return cls;
    return null;
  }
  const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
  // Parsed once for every list: BlockList.check(string) parses its argument anew each time, and
  // ~30 parses were ~95% of the cost (a country lookup runs this for each new address at ingest).
  // An address that does not parse matches no list, as BlockList.check(string) answers it.
  let address: SocketAddress | null;
  try {
    address = new SocketAddress({ address: ip, family });
  } catch {
    address = null;
  }
  if (address !== null) for (const { cls, list } of RANGES) if (list.check(address)) return cls;
  if (family === 'ipv6' && (address === null || !IPV6_ROUTABLE.check(address))) return 'reserved';
  return null;
}

export interface OutboundPolicy {
  /** Host names (lower case, no trailing dot) that may resolve to any address. */
  readonly allowedHosts: ReadonlySet<string>;
  /** Addresses and CIDR ranges allowed even though they are not public. */
  readonly allowedAddresses: BlockList;
  /** Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10) allowed as a whole. */
  readonly allowPrivate: boolean;
}

/**
 * Reads an allowlist: comma-separated host names, IP addresses and CIDR ranges
 * (`receiver.internal, 10.1.2.3, 192.168.0.0/16, fd00::/8`). Each bad entry is named in `errors`.
 */
export function parseAllowlist(spec: string): { hosts: Set<string>; addresses: BlockList; errors: string[] } {
  const hosts = new Set<string>();
  const addresses = new BlockList();
  const errors: string[] = [];
  for (const raw of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const slash = raw.indexOf('/');
    const ip = unbracket(slash === -1 ? raw : raw.slice(0, slash));
    const family = isIP(ip);
    if (slash !== -1) {
      const prefix = raw.slice(slash + 1);
      const max = family === 6 ? 128 : 32;
      if (family === 0 || !/^\d{1,3}$/.test(prefix) || Number(prefix) > max) {
        errors.push(`"${raw}" is not a CIDR range (address/prefix, prefix at most ${max})`);
        continue;
      }
      addresses.addSubnet(ip, Number(prefix), family === 6 ? 'ipv6' : 'ipv4');
    } else if (family !== 0) {
      addresses.addAddress(ip, family === 6 ? 'ipv6' : 'ipv4');
    } else if (isHostName(raw)) {
      hosts.add(normalizeHostName(raw));
    } else {
      errors.push(`"${raw}" is neither a host name, an IP address nor a CIDR range`);
    }
  }
  return { hosts, addresses, errors };
}

export function outboundPolicy(options: { allowedHosts?: string; allowPrivate?: boolean } = {}): OutboundPolicy {
  const { hosts, addresses, errors } = parseAllowlist(options.allowedHosts ?? '');
  if (errors.length > 0) throw new Error(`bad allowlist: ${errors.join('; ')}`);
  return { allowedHosts: hosts, allowedAddresses: addresses, allowPrivate: options.allowPrivate ?? false };
}

/** Why `ip` may not be reached under `policy`, or null when it may. */
export function addressRefusal(ip: string, policy: OutboundPolicy): AddressClass | null {
  const family = isIP(ip);
  if (family === 0) return 'reserved';
  if (policy.allowedAddresses.check(ip, family === 6 ? 'ipv6' : 'ipv4')) return null;
  const cls = classifyAddress(ip);
  if (cls === null || (policy.allowPrivate && PRIVATE_NETWORK_CLASSES.has(cls))) return null;
  return cls;
}

/** `what` says whether the URL itself (scheme, credentials) or the address it leads to is refused. */
export type UrlCheck = { ok: true; url: URL } | { ok: false; what: 'url' | 'address'; reason: string };

/**
 * Checks a URL as written: http or https, no credentials, and a host that is neither a
 * non-public address (in any spelling: the WHATWG parser turns 127.1, 0x7f000001, 2130706433
 * and 0177.0.0.1 into 127.0.0.1 before the check) nor a `localhost` name. A host name is not
 * resolved here: what it resolves to is checked when the request connects (`guardedLookup`).
 */
export function checkOutboundUrl(raw: string, policy: OutboundPolicy): UrlCheck {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, what: 'url', reason: 'is not a valid URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, what: 'url', reason: 'must use http or https' };
  if (url.username !== '' || url.password !== '') return { ok: false, what: 'url', reason: 'must not carry credentials (user:password@); authenticate receivers by the signature' };
  const host = unbracket(url.hostname);
  if (isIP(host) !== 0) {
    const refusal = addressRefusal(host, policy);
    return refusal === null ? { ok: true, url } : { ok: false, what: 'address', reason: refusedMessage(host, refusal) };
  }
  const name = normalizeHostName(host);
  if (!policy.allowedHosts.has(name) && (name === 'localhost' || name.endsWith('.localhost'))) {
    return { ok: false, what: 'address', reason: refusedMessage(name, 'loopback') };
  }
  return { ok: true, url };
}

function refusedMessage(host: string, cls: AddressClass): string {
  return `points to ${host} (${cls} address), which webhooks may not reach (an operator can allow it with WEBHOOK_ALLOWED_HOSTS)`;
}

/** Thrown through the socket when every address a name resolves to is refused. */
export class AddressRefusedError extends Error {
  readonly code = 'ERR_ADDRESS_REFUSED';
  constructor(
    readonly host: string,
    readonly refused: { address: string; cls: AddressClass }[],
  ) {
    super(`${host}: no allowed address (${refused.map((r) => `${r.address} is ${r.cls}`).join(', ') || 'none resolved'})`);
    this.name = 'AddressRefusedError';
  }
}

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Name resolution, injectable (tests give a name any address they need); getaddrinfo by default. */
export type Resolve = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolve: Resolve = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/**
 * A `lookup` for net/http/https that resolves the name and hands the socket only allowed
 * addresses, so the address checked is the address connected to: no window in which DNS can
 * answer differently (rebinding). Names on the allowlist may resolve anywhere. IP literals
 * never reach a lookup; check them with `checkOutboundUrl` before connecting.
 */
export function guardedLookup(policy: OutboundPolicy, resolve: Resolve = systemResolve): LookupFunction {
  return (hostname, options, callback) => {
    const trusted = policy.allowedHosts.has(normalizeHostName(hostname));
    const pick = (all: ResolvedAddress[]): ResolvedAddress[] => {
      const wanted = options.family === 4 || options.family === 6 ? all.filter((a) => a.family === options.family) : all;
      const refused: { address: string; cls: AddressClass }[] = [];
      const usable = wanted.filter((a) => {
        const cls = trusted ? null : addressRefusal(a.address, policy);
        if (cls !== null) refused.push({ address: a.address, cls });
        return cls === null;
      });
      if (usable.length > 0) return usable;
      if (refused.length > 0) throw new AddressRefusedError(hostname, refused);
      throw Object.assign(new Error(`${hostname}: no address`), { code: 'ENOTFOUND' });
    };
    // every outcome, a throw in `pick` included, ends in the callback: nothing is left unhandled
    resolve(hostname)
      .then(pick)
      .then(
        (usable) => (options.all ? callback(null, usable) : callback(null, usable[0]!.address, usable[0]!.family)),
        (err: NodeJS.ErrnoException) => callback(err, ''),
      );
  };
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function normalizeHostName(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

function isHostName(value: string): boolean {
  return /^(?=.{1,253}\.?$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i.test(value);
}
