import type { ReactionDeps } from '../../src/domain/quotas/reactions';
import type { JobDeps } from './types';

export function reactionDeps(deps: JobDeps): ReactionDeps {
  return {
    pool: deps.pool,
    logger: deps.logger,
    webhooks: { prisma: deps.prisma, queues: deps.queues, retryBaseMs: deps.env.WEBHOOK_RETRY_BASE_MS },
  };
}
