import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

function normalised(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The client's address: the TCP peer, or with `trustProxy` = n (n proxies of our own in front)
 * the n-th entry from the right of X-Forwarded-For, which the nearest of our proxies appended.
 * Entries further left are the client's own claims and never trusted; a value that is not an
 * IP address, or a header shorter than n, falls back to the peer.
 */
export function clientAddress(req: IncomingMessage, trustProxy: number): string | null {
  const peer = req.socket.remoteAddress ? normalised(req.socket.remoteAddress) : null;
  if (trustProxy === 0) return peer;
  const header = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((s) => s.trim()).filter(Boolean);
  const claimed = hops[hops.length - trustProxy];
  return claimed !== undefined && isIP(claimed) ? normalised(claimed) : peer;
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback(address: string | null): boolean {
  if (!address) return false;
  const a = normalised(address);
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}
