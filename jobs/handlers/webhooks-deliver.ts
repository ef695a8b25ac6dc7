import { attemptDelivery } from '../../src/domain/webhooks/deliver';
import { webhookPolicy } from '../../src/domain/webhooks/url-policy';
import type { JobHandler } from './types';

export const deliverWebhook: JobHandler<'webhooks.deliver'> = async (deps, { deliveryId }, ctx) => {
  const outcome = await attemptDelivery(
    { prisma: deps.prisma, timeoutMs: deps.env.WEBHOOK_TIMEOUT_MS, policy: webhookPolicy(deps.env), logger: deps.logger },
    deliveryId,
    { number: ctx.attempt, last: ctx.attempt >= ctx.maxAttempts },
  );
  return { rowsTouched: outcome.status === 'SKIPPED' ? 0 : 1, ...outcome };
};
