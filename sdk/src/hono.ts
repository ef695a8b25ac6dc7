/** `@tally/sdk/hono`: billable-route middleware for Hono, and a wrapper for plain fetch handlers. */
import type { Context, MiddlewareHandler } from 'hono';
import { type BillingOptions, createBillingCore, pathOf } from './middleware.js';

export type TallyHonoOptions = BillingOptions<Context, Context>;

/** A response whose headers may be changed (responses from fetch() have immutable headers). */
function withHeader(response: Response, name: string, value: string): Response {
  try {
    response.headers.set(name, value);
    return response;
  } catch {
    const copy = new Response(response.body, response);
    copy.headers.set(name, value);
    return copy;
  }
}

/** `app.use('*', tallyHono({ tally, billableRoutes, licenseId: (c) => c.req.header('x-license') }))`. */
export function tallyHono(options: TallyHonoOptions): MiddlewareHandler {
  const core = createBillingCore(options);
  return async (c, next) => {
    const decision = await core.before(c, c.req.method, pathOf(c.req.url), c.req.header('x-request-id'));
    if (decision.billable && decision.refusal) {
      return c.json(decision.refusal.body, decision.refusal.status as 429, { ...decision.refusal.headers, 'X-Request-ID': decision.requestId });
    }
    await next();
    c.res = withHeader(c.res, 'X-Request-ID', decision.requestId);
    core.after(decision, c, c.res.status);
    return undefined;
  };
}

export type TallyFetchOptions = BillingOptions<Request, Response>;

/**
 * Any `(request) => Response` handler (Bun.serve, Deno.serve, Cloudflare Workers, Next.js route
 * handlers): `export default { fetch: withTally(options, handler) }`.
 */
export function withTally<Args extends unknown[]>(
  options: TallyFetchOptions,
  handler: (request: Request, ...rest: Args) => Response | Promise<Response>,
): (request: Request, ...rest: Args) => Promise<Response> {
  const core = createBillingCore(options);
  return async (request, ...rest) => {
    const decision = await core.before(request, request.method, pathOf(request.url), request.headers.get('x-request-id'));
    if (decision.billable && decision.refusal) {
      return Response.json(decision.refusal.body, { status: decision.refusal.status, headers: { ...decision.refusal.headers, 'X-Request-ID': decision.requestId } });
    }
    const response = withHeader(await handler(request, ...rest), 'X-Request-ID', decision.requestId);
    core.after(decision, response, response.status);
    return response;
  };
}
