import http from 'node:http';
import { parseOrigins } from '../lib/origins';

/** Every path a browser on another origin may call: tRPC, the exports and the REST face to come. */
export const CORS_PATH_PREFIX = '/api/';

/** Methods of the API's paths, REST's included (tRPC needs GET and POST only). */
export const CORS_ALLOWED_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/**
 * Request headers a browser script may send. Content-Type is listed because application/json is
 * not one of the CORS-safelisted types; `accept` and `content-language` need no listing.
 */
export const CORS_ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'x-tally-tenant',
  'x-tally-environment',
  'x-request-id',
  'idempotency-key',
  'trpc-accept',
] as const;

/** Response headers a browser script may read beyond the safelisted ones: the rate limits above all. */
export const CORS_EXPOSED_HEADERS = [
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'retry-after',
  'x-request-id',
] as const;

/** How long a browser may reuse a preflight answer (seconds; browsers cap it, Chromium at 2 hours). */
export const CORS_MAX_AGE_SECONDS = 7200;

/**
 * A response whose `Vary` accumulates: tRPC sets `vary: trpc-accept, accept` after the CORS
 * headers were set, and a plain setHeader would drop `Origin` from it, letting a cache hand one
 * origin's answer to another. Every other header behaves as usual.
 */
export class VaryMergingResponse<Request extends http.IncomingMessage = http.IncomingMessage> extends http.ServerResponse<Request> {
  override setHeader(name: string, value: number | string | readonly string[]): this {
    if (name.toLowerCase() !== 'vary') return super.setHeader(name, value);
    const seen = new Set<string>();
    const merged: string[] = [];
    const previous = this.getHeader('vary');
    for (const part of [previous ?? [], value].flat().flatMap((v) => String(v).split(','))) {
      const token = part.trim();
      if (token && !seen.has(token.toLowerCase())) {
        seen.add(token.toLowerCase());
        merged.push(token);
      }
    }
    return super.setHeader(name, merged.join(', '));
  }
}

export type CorsOutcome = 'answered' | 'continue';

/**
 * CORS for /api/*, from CORS_ALLOWED_ORIGINS (exact origins; empty = same origin only, and then
 * nothing here adds a header). Returns `answered` when it has answered the request itself (a
 * preflight), `continue` when the route should serve it.
 *
 * - A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here, before
 *   any authentication, so it never counts against the authentication throttles or a key's rate
 *   limit: 204 with the allowed methods, headers and Max-Age for a listed origin, else 403 with a
 *   reason and no CORS header (the browser then refuses the call).
 * - An actual request from a listed origin gets Access-Control-Allow-Origin (that origin, never
 *   `*`) and Access-Control-Expose-Headers; from any other origin (or none) it is served as it
 *   would be without CORS: browsers refuse to show the answer, other clients are unaffected.
 * - No Access-Control-Allow-Credentials: keys travel in the Authorization header, which a script
 *   sets itself, never as cookies a browser would attach on its own.
 * - Vary: Origin on every /api/* answer once origins are listed, since answers then depend on it.
 */
export function createCors(spec: string): (req: http.IncomingMessage, res: http.ServerResponse) => CorsOutcome {
  const { origins, errors } = parseOrigins(spec);
  // env.ts refuses these at boot; a caller that skipped it must not get an API open by accident
  if (errors.length > 0) throw new Error(`bad CORS_ALLOWED_ORIGINS: ${errors.join('; ')}`);
  const preflightHeaders = {
    'access-control-allow-methods': CORS_ALLOWED_METHODS.join(', '),
    'access-control-allow-headers': CORS_ALLOWED_HEADERS.join(', '),
    'access-control-max-age': String(CORS_MAX_AGE_SECONDS),
  };
  const exposed = CORS_EXPOSED_HEADERS.join(', ');

  return (req, res) => {
    const origin = req.headers.origin;
    const allowed = origin !== undefined && origins.has(origin);
    if (origins.size > 0) res.setHeader('vary', 'origin');
    const preflight = req.method === 'OPTIONS' && origin !== undefined && req.headers['access-control-request-method'] !== undefined;
    if (preflight) {
      if (allowed) {
        res.writeHead(204, { ...preflightHeaders, 'access-control-allow-origin': origin, 'content-length': '0' });
        res.end();
      } else {
        const message =
          origins.size === 0
            ? `cross-origin calls from browsers are off: this API answers its own origin only (an operator lists other origins in CORS_ALLOWED_ORIGINS)`
            : `origin ${JSON.stringify(origin.slice(0, 200))} may not call this API from a browser (it is not listed in CORS_ALLOWED_ORIGINS)`;
        const text = JSON.stringify({ error: { message, code: 'FORBIDDEN' } });
        res.writeHead(403, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      }
      return 'answered';
    }
    if (allowed) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-expose-headers', exposed);
    }
    return 'continue';
  };
}
