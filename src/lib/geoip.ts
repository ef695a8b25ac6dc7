import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { LruMap } from './bounded-cache';
import { classifyAddress } from './net-guard';

/**
 * The country of an IP address (ISO 3166-1 alpha-2), from the GeoLite2 country data that the
 * `geoip-country` package ships (no download at run time; see the README for its licence and
 * data date). Synchronous and in memory: ~8 MB of ranges, loaded on the first lookup of the
 * process, not at start.
 */
type CountryLookup = (ip: string) => { country?: unknown } | null;

let database: CountryLookup | null = null;

function countryDatabase(): CountryLookup {
  if (database === null) {
    // Loaded on first use: a worker or scheduler that never maps an address never pays for it.
    const geoip = createRequire(__filename)('geoip-country') as { lookup: CountryLookup };
    database = (ip) => geoip.lookup(ip);
  }
  return database;
}

/**
 * Batches usually carry one address (the caller's, filled in when events do not send one): the
 * last few thousand answers are kept, so most lookups are a Map read.
 */
const recent = new LruMap<string, string | null>(4096);
/** The very last answer, before the LRU (whose hit reorders the Map): a batch from one caller repeats it. */
let last: { ip: string; country: string | null } = { ip: '', country: null };

const ISO_ALPHA2 = /^[A-Z]{2}$/;

/**
 * The IPv4 address an IPv6 address carries in the forms that reach it (::ffff:a.b.c.d mapped,
 * 64:ff9b::/96 NAT64, 2002::/16 6to4), or null. The package only understands the mapped form
 * written with dots, so the others are turned into the IPv4 address they stand for.
 */
function embeddedIpv4(ip: string): string | null {
  const lower = ip.toLowerCase();
  if (!lower.startsWith('::ffff:') && !lower.startsWith('0:0:0:0:0:ffff:') && !lower.startsWith('64:ff9b::') && !lower.startsWith('2002:')) return null;
  let hextets: number[];
  try {
    // The URL parser writes the address in its canonical compressed form, dotted tails as hex.
    const host = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
    const [head = '', tail = ''] = host.split('::');
    const left = head === '' ? [] : head.split(':');
    const right = tail === '' ? [] : tail.split(':');
    const parts = host.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
    hextets = parts.map((h) => parseInt(h, 16));
  } catch {
    return null;
  }
  if (hextets.length !== 8 || hextets.some((h) => !(h >= 0 && h <= 0xffff))) return null;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  if (hextets[0] === 0x2002) return v4(hextets[1]!, hextets[2]!);
  const prefixZero = hextets.slice(0, 5).every((h) => h === 0) && hextets[5] === 0xffff;
  const nat64 = hextets[0] === 0x64 && hextets[1] === 0xff9b && hextets.slice(2, 6).every((h) => h === 0);
  return prefixZero || nat64 ? v4(hextets[6]!, hextets[7]!) : null;
}

function lookUp(ip: string): string | null {
  const family = isIP(ip);
  if (family === 0) return null;
  // Private, loopback, link-local, documentation and other non-public addresses have no country.
  if (classifyAddress(ip) !== null) return null;
  const found = countryDatabase()((family === 6 ? embeddedIpv4(ip) : null) ?? ip);
  const country = found?.country;
  return typeof country === 'string' && ISO_ALPHA2.test(country) ? country : null;
}

/**
 * The country of `ip`, or null for anything without one: no address, a malformed one, a
 * non-public one (reusing the SSRF guard's classification), or one the data does not place.
 * Never throws: a country is a nice-to-have that must not cost an event.
 */
export function countryOfAddress(ip: string | null | undefined): string | null {
  if (typeof ip !== 'string' || ip.length === 0 || ip.length > 64) return null;
  if (ip === last.ip) return last.country;
  const known = recent.get(ip);
  if (known !== undefined) {
    last = { ip, country: known };
    return known;
  }
  let country: string | null;
  try {
    country = lookUp(ip);
  } catch {
    country = null;
  }
  recent.set(ip, country);
  last = { ip, country };
  return country;
}
