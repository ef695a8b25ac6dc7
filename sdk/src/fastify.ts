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
  // Callback-style hook, not an async one: Fastify runs an async hook's promise through one more
  // turn of the microtask queue, a cost every request paid whether or not it was billable.
  const proceed = (decision: Decision<FastifyRequest>, reply: FastifyReply, next: HookHandlerDoneFunction) => {
    // lower case, as Fastify keeps header names (it would lower-case it for every request)
    void reply.header('x-request-id', decision.requestId);
    if (decision.billable && decision.refusal) {
      // answered here: Fastify skips the handler, and `next` is not called (a hook that replies)
      void reply.code(decision.refusal.status).headers(decision.refusal.headers).send(decision.refusal.body);
      return;
    }
    // Recorded once the response has been sent, as Fastify's onResponse would, but only for the
    // requests that are billed: an onResponse hook makes Fastify set up its response listeners
    // for every request of the instance, billable or not.
    if (decision.billable) reply.raw.on('finish', () => core.after(decision, reply, reply.raw.statusCode));
    next();
  };
  fastify.addHook('onRequest', (request, reply, next) => {
    const decided = core.before(request, request.method, pathOf(request.url), request.headers['x-request-id']);
    // Without a check to wait for, the decision is here now: the route runs in this turn.
    if (decided instanceof Promise) decided.then((decision) => proceed(decision, reply, next), next);
    else proceed(decided, reply, next);
  });
  done();
};
// What fastify-plugin does: register the hooks on the parent instance, not a child context.
Object.assign(tallyFastify, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: '@tally/sdk' });
