import type { TrackDeps } from '../../../domain/usage/track';
import type { Services } from '../../services';

export function trackDeps(services: Services): TrackDeps {
  return {
    limits: {
      maxAgeMs: services.env.EVENT_MAX_AGE_DAYS * 86_400_000,
      maxFutureMs: services.env.EVENT_MAX_FUTURE_SECONDS * 1000,
    },
    writer: services.eventWriter,
    committer: services.groupCommitter,
    metrics: services.metrics,
  };
}
