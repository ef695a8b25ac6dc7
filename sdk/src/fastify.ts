/** `@tally/sdk/fastify`: billable-route plugin for Fastify 4 and 5. */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { type BillingOptions, type Decision, createBillingCore, pathOf } from './middleware.js';

export type TallyFastifyOptions = BillingOptions<FastifyRequest, FastifyReply>;

/**
 * `await app.register(tallyFastify, { tally, billableRoutes, licenseId })`. Not encapsulated (as if
 * wrapped in fastify-plugin), so its hooks see every route of the instance it is registered on.
 */
export const tallyFastify: FastifyPluginCallback<TallyFastifyOptions> = (fastify, options, done) => {
  const core = createBillingCore(options);
  // The decision rides on the request, in a slot declared up front (Fastify builds every request
  // with it). Not a WeakMap: V8's young-generation collector keeps a WeakMap's values alive as
  // long as the map itself is alive (keys alone are weak there), so every decision, and the request
  // it holds, outlived its request and was promoted: ~1 KB per request for the old generation.
  const slot = Symbol('tally.decision');
  type WithDecision = FastifyRequest & { [slot]?: Decision<FastifyRequest> | null };
  fastify.decorateRequest(slot, null);
  // Callback-style hooks, not async ones: Fastify runs an async hook's promise through one more
  // turn of the microtask queue, a cost every request paid whether or not it was billable.
  const proceed = (decision: Decision<FastifyRequest>, request: FastifyRequest, reply: FastifyReply, next: HookHandlerDoneFunction) => {
    void reply.header('X-Request-ID', decision.requestId);
    if (decision.billable && decision.refusal) {
      // answered here: Fastify skips the handler, and `next` is not called (a hook that replies)
      void reply.code(decision.refusal.status).headers(decision.refusal.headers).send(decision.refusal.body);
      return;
    }
    if (decision.billable) (request as WithDecision)[slot] = decision;
    next();
  };
  fastify.addHook('onRequest', (request, reply, next) => {
    const decided = core.before(request, request.method, pathOf(request.url), request.headers['x-request-id']);
    // Without a check to wait for, the decision is here now: the route runs in this turn.
    if (decided instanceof Promise) decided.then((decision) => proceed(decision, request, reply, next), next);
    else proceed(decided, request, reply, next);
  });
  fastify.addHook('onResponse', (request, reply, next) => {
    const decision = (request as WithDecision)[slot];
    if (decision) core.after(decision, reply, reply.statusCode);
    next();
  });
  done();
};
// What fastify-plugin does: register the hooks on the parent instance, not a child context.
Object.assign(tallyFastify, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: '@tally/sdk' });
