import { router } from '../../trpc';
import { trackEventProcedure } from './track-event';
import { trackEventsProcedure } from './track-events';

export const usageRouter = router({
  trackEvent: trackEventProcedure,
  trackEvents: trackEventsProcedure,
});
