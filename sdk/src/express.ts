/** `@tally/sdk/express`: billable-route middleware for Express 4 and 5. */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { type BillingOptions, type Decision, createBillingCore, pathOf } from './middleware.js';

export type TallyExpressOptions = BillingOptions<Request, Response>;

/**
 * `app.use(tallyExpress({ tally, billableRoutes: ['POST /v1/generate'], licenseId: (req) => ... }))`,
 * before the routes. Sets `X-Request-ID` on every answer; bills billable routes once the response
 * has been sent (`finish`); with `enforce`, answers 429 before the handler when the quota is used up.
 */
export function tallyExpress(options: TallyExpressOptions): RequestHandler {
  const core = createBillingCore(options);
  const proceed = (decision: Decision<Request>, res: Response, next: NextFunction) => {
    res.setHeader('X-Request-ID', decision.requestId);
    if (decision.billable && decision.refusal) {
      res.status(decision.refusal.status).set(decision.refusal.headers).json(decision.refusal.body);
      return;
    }
    // `on`, not `once`: a response finishes once, and once's wrapper costs more than the listener
    if (decision.billable) res.on('finish', () => core.after(decision, res, res.statusCode));
    next();
  };
  return (req: Request, res: Response, next: NextFunction) => {
    const decided = core.before(req, req.method, pathOf(req.originalUrl ?? req.url), req.headers['x-request-id']);
    // Without a check to wait for, the route runs in this turn: no promise hop per request.
    if (decided instanceof Promise) decided.then((decision) => proceed(decision, res, next), next);
    else proceed(decided, res, next);
  };
}
