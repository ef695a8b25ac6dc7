import type { TrackDeps } from '../../../domain/usage/track';
import type { ReactionDeps } from '../../../domain/quotas/reactions';
import type { Services } from '../../services';

export function reactionDepsOf(services: Services): ReactionDeps {
  return {
    pool: services.db.pool,
    logger: services.logger,
    webhooks: { prisma: services.db.prisma, queues: services.queues, retryBaseMs: services.env.WEBHOOK_RETRY_BASE_MS },
  };
}

export function trackDeps(services: Services): TrackDeps {
  return {
    limits: {
      maxAgeMs: services.env.EVENT_MAX_AGE_DAYS * 86_400_000,
      maxFutureMs: services.env.EVENT_MAX_FUTURE_SECONDS * 1000,
    },
    writer: services.eventWriter,
    committer: services.groupCommitter,
    metrics: services.metrics,
    quota: { enforcer: services.quota, reactions: reactionDepsOf(services) },
  };
}
