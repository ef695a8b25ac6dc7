import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isLoopback } from './client-address';

export type MetricsRefusal = { status: 401 | 403; message: string; headers: Record<string, string> };

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * Who may read /metrics. With a token configured, whoever sends it as a Bearer credential (the
 * way Prometheus's `authorization` scrape setting sends it); without one, loopback clients only,
 * so a default install does not show its internals to the world.
 */
export function createMetricsGate(token: string | undefined): (req: IncomingMessage, clientAddress: string | null) => MetricsRefusal | null {
  const expected = token === undefined ? undefined : digest(token);
  return (req, clientAddress): MetricsRefusal | null => {
    if (expected === undefined) {
      if (isLoopback(clientAddress)) return null;
      return { status: 403, message: 'metrics are served to loopback clients only; set METRICS_TOKEN to scrape from elsewhere', headers: {} };
    }
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    // compared as digests: equal lengths for timingSafeEqual, and no early exit on the first byte
    if (presented !== undefined && timingSafeEqual(digest(presented), expected)) return null;
    return {
      status: 401,
      message: 'metrics need Authorization: Bearer <METRICS_TOKEN>',
      headers: { 'www-authenticate': 'Bearer realm="metrics"' },
    };
  };
}
