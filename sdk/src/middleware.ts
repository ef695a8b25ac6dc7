/**
 * The core every framework adapter shares: which requests are billable, the request id, the
 * quota check before the handler, and the event recorded after the response. The adapters only
 * translate their request and response objects; no `node:` import here either.
 */
import { type CheckResult, type RequestEvent, TRACK_REQUEST, type Tally } from './client.js';
import { uuidV4 } from './uuid.js';

type MaybePromise<T> = T | Promise<T>;

export interface BillingOptions<Req, Res> {
  tally: Tally;
  /**
   * Billable routes: `"POST /v1/generate"`, `"/v1/search/*"` (any method), `"GET /v1/items/:id"`.
   * `*` matches the rest of the path (one or more segments), `:name` exactly one segment.
   */
  billableRoutes: string[];
  /** Never billed, even when a billable pattern matches. Default: /health, /metrics, /docs, /docs/*, /auth/*. */
  exclude?: string[];
  /** The license to bill. A request without one is not billed (the app's own auth should refuse it). */
  licenseId: (req: Req) => MaybePromise<string | undefined | null>;
  /** Default `api_call`. */
  usageType?: (req: Req) => string;
  /** Read after the response (e.g. a header or `res.locals` the handler set). Default 1. */
  quantity?: (req: Req, res: Res) => number | string | undefined | null;
  userId?: (req: Req) => string | undefined | null;
  userEmail?: (req: Req) => string | undefined | null;
  organization?: (req: Req) => string | undefined | null;
  /** Check the quota before the handler and answer 429 when it is used up. Default false. */
  enforce?: boolean;
  /**
   * When Tally cannot be asked (enforce) the request goes on (true, the default) or is answered
   * 503 (false). Recording never blocks a request either way: events wait in the SDK's buffer.
   */
  failOpen?: boolean;
  /**
   * Use the caller's X-Request-ID as the idempotency key (default true), so a retried request is
   * billed once. A caller who reuses one id for many requests is billed once for them all; when
   * callers are not trusted with that, set false: every request then gets a new id (still echoed).
   */
  trustRequestId?: boolean;
  /** How long the check before the handler may take. Default 2,000 ms. */
  checkTimeoutMs?: number;
}

export const DEFAULT_EXCLUDE = ['/health', '/metrics', '/docs', '/docs/*', '/auth/*'];

/** A request id we accept from callers: 1-128 characters of `A-Z a-z 0-9 . _ : -`. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export interface RoutePattern {
  method: string | null;
  pattern: string;
  regex: RegExp;
}

/** `"POST /v1/x/:id"` → method POST, a regex over the path (trailing slash ignored). */
export function compilePattern(spec: string): RoutePattern {
  const trimmed = spec.trim();
  const space = trimmed.indexOf(' ');
  const method = space > 0 ? trimmed.slice(0, space).toUpperCase() : null;
  const pattern = (space > 0 ? trimmed.slice(space + 1).trim() : trimmed).replace(/\/+$/, '') || '/';
  if (!pattern.startsWith('/')) throw new TypeError(`route pattern must start with "/": ${spec}`);
  const source = pattern
    .split('/')
    .map((segment) => {
      if (segment === '*') return '.+';
      if (segment.startsWith(':')) return '[^/]+';
      return segment.replace(/[.+?^${}()|[\]\\*]/g, (c) => (c === '*' ? '[^/]*' : `\\${c}`));
    })
    .join('/');
  return { method, pattern, regex: new RegExp(`^${source}/?$`) };
}

export function matchRoute(patterns: readonly RoutePattern[], method: string, path: string): RoutePattern | undefined {
  const m = method.toUpperCase();
  for (const p of patterns) {
    if ((p.method === null || p.method === m || (p.method === 'GET' && m === 'HEAD')) && p.regex.test(path)) return p;
  }
  return undefined;
}

/** The path of a URL or request target, without query or fragment, percent-decoding left alone. */
export function pathOf(target: string): string {
  const start = target.startsWith('http://') || target.startsWith('https://') ? target.indexOf('/', target.indexOf('//') + 2) : 0;
  if (start === -1) return '/';
  const rest = target.slice(start);
  const end = rest.search(/[?#]/);
  return (end === -1 ? rest : rest.slice(0, end)) || '/';
}

export function newRequestId(): string {
  return uuidV4();
}

/** The caller's X-Request-ID when it is well formed, otherwise a new one. */
export function requestIdFrom(header: string | string[] | undefined | null): string {
  const value = Array.isArray(header) ? header[0] : header;
  return typeof value === 'string' && REQUEST_ID_PATTERN.test(value) ? value : newRequestId();
}

export interface Refusal {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

/**
 * The 429 of a refused check, with the headers Tally's own 429s carry: IETF RateLimit-* (reset in
 * seconds), the seeds' X-RateLimit-* (reset as a unix time) and Retry-After, for the hard limit
 * that refused (the one that resets last when several did).
 */
export function refusalOf(check: CheckResult, now = Date.now()): Refusal {
  const refusing = check.limits.filter((l) => l.hard && !l.allowed).sort((a, b) => Date.parse(b.periodEnd) - Date.parse(a.periodEnd));
  const limit = refusing[0];
  const headers: Record<string, string> = {};
  let retryAfter = 60;
  if (limit) {
    const resetAt = Date.parse(limit.periodEnd);
    retryAfter = Math.max(1, Math.ceil((resetAt - now) / 1000));
    Object.assign(headers, {
      'RateLimit-Limit': limit.limit,
      'RateLimit-Remaining': limit.remaining ?? '0',
      'RateLimit-Reset': String(retryAfter),
      'X-RateLimit-Limit': limit.limit,
      'X-RateLimit-Remaining': limit.remaining ?? '0',
      'X-RateLimit-Reset': String(Math.ceil(resetAt / 1000)),
    });
  }
  headers['Retry-After'] = String(retryAfter);
  return {
    status: 429,
    headers,
    body: {
      error: {
        code: 'QUOTA_EXCEEDED',
        message: limit ? `${check.usageType} quota of ${limit.limit} per ${limit.periodType.replace(/ly$/, '').replace('dai', 'day')} used up; retry in ${retryAfter} s` : `${check.usageType} quota used up`,
        usageType: check.usageType,
        ...(limit ? { period: limit.periodType, limit: limit.limit, used: limit.used, remaining: limit.remaining, resetAt: limit.periodEnd } : {}),
      },
    },
  };
}

const UNAVAILABLE: Refusal = {
  status: 503,
  headers: { 'Retry-After': '5' },
  body: { error: { code: 'USAGE_SERVICE_UNAVAILABLE', message: 'the usage service could not be reached; try again shortly' } },
};

/** What the adapter learns before the handler runs. */
export type Decision<Req> =
  | { billable: false; requestId: string }
  | {
      billable: true;
      requestId: string;
      route: RoutePattern;
      method: string;
      licenseId: string;
      usageType: string;
      started: number;
      req: Req;
      refusal?: Refusal;
    };

export interface BillingCore<Req, Res> {
  /**
   * Decide for one request: not billable, billable, or refused (429 / 503). Never throws. The
   * decision comes back at once (not as a promise) when nothing had to be waited for: no quota
   * check (`enforce: false`) and a `licenseId` that answered synchronously.
   */
  before(req: Req, method: string, path: string, requestIdHeader: string | string[] | undefined | null): Decision<Req> | Promise<Decision<Req>>;
  /** Record a billable request after its response. Never throws; never waits for Tally. */
  after(decision: Decision<Req>, res: Res, statusCode: number): void;
}

function isPromiseLike<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

export function createBillingCore<Req, Res>(options: BillingOptions<Req, Res>): BillingCore<Req, Res> {
  const billable = options.billableRoutes.map(compilePattern);
  const excluded = (options.exclude ?? DEFAULT_EXCLUDE).map(compilePattern);
  const usageTypeOf = options.usageType ?? (() => 'api_call');
  const failOpen = options.failOpen ?? true;
  const checkTimeoutMs = options.checkTimeoutMs ?? 2000;
  const now = () => globalThis.performance?.now() ?? Date.now();
  // Looked up once: through the client's proxy a lookup per request costs more than the call.
  const trackRequest = options.tally[TRACK_REQUEST];

  async function checked(decision: Decision<Req> & { billable: true }): Promise<Decision<Req>> {
    try {
      const check = await options.tally.check(
        { licenseId: decision.licenseId, usageType: decision.usageType, quantity: 1 },
        { signal: AbortSignal.timeout(checkTimeoutMs) },
      );
      if (!check.allowed) decision.refusal = refusalOf(check);
    } catch (error) {
      const status = (error as { data?: { httpStatus?: number } }).data?.httpStatus;
      // A license Tally does not know (404) or a bad usage type (400) is the app's mistake, not
      // an outage: let the request through and let the recorded event be reported to onError.
      if (!(status !== undefined && status >= 400 && status < 500 && status !== 429) && !failOpen) decision.refusal = UNAVAILABLE;
    }
    return decision;
  }

  return {
    before(req, method, path, requestIdHeader) {
      const requestId = options.trustRequestId === false ? newRequestId() : requestIdFrom(requestIdHeader);
      const route = matchRoute(billable, method, path);
      if (!route || matchRoute(excluded, method, path)) return { billable: false, requestId };
      const started = now();
      const decide = (licenseId: string | undefined | null, usageType: string): Decision<Req> | Promise<Decision<Req>> => {
        if (!licenseId) return { billable: false, requestId };
        const decision = { billable: true as const, requestId, route, method: method.toUpperCase(), licenseId, usageType, started, req };
        return options.enforce ? checked(decision) : decision;
      };
      let licenseId: MaybePromise<string | undefined | null>;
      try {
        licenseId = options.licenseId(req);
        if (!isPromiseLike(licenseId)) return decide(licenseId, usageTypeOf(req));
      } catch {
        return { billable: false, requestId };
      }
      // Promise.resolve: a native promise whatever thenable licenseId gave (the adapters test for one).
      return Promise.resolve(licenseId).then(
        (id) => {
          let usageType: string;
          try {
            usageType = usageTypeOf(req);
          } catch {
            return { billable: false, requestId };
          }
          return decide(id, usageType);
        },
        () => ({ billable: false, requestId }),
      );
    },

    after(decision, res, statusCode) {
      if (!decision.billable || decision.refusal) return;
      try {
        const quantity = options.quantity ? options.quantity(decision.req, res) : 1;
        const event: RequestEvent = {
          licenseId: decision.licenseId,
          usageType: decision.usageType,
          quantity: quantity ?? 1,
          // Scoped to the license so that two customers' request ids never meet in Tally's
          // tenant-wide idempotency index.
          idempotencyKey: `req:${decision.licenseId}:${decision.requestId}`,
          route: decision.route.pattern,
          method: decision.method,
          statusCode: statusCode >= 100 && statusCode <= 599 ? statusCode : undefined,
          durationMs: Math.max(0, Math.round(now() - decision.started)),
        };
        const userId = options.userId?.(decision.req);
        if (userId) event.userId = userId;
        const userEmail = options.userEmail?.(decision.req);
        if (userEmail) event.userEmail = userEmail;
        const organization = options.organization?.(decision.req);
        if (organization) event.organization = organization;
        // its JSON written straight into the client's buffer, field by field; anything odd (an
        // app's function that returned something else than text) goes through track, which
        // reports what it cannot send
        trackRequest(event);
      } catch {
        // a throwing quantity()/userId() must not break the app's response
      }
    },
  };
}
