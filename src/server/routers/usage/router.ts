import { router } from '../../trpc';
import { checkProcedure } from './check';
import { currentProcedure } from './current';
import { jobStatusProcedure } from './job-status';
import { recalculateAggregatesProcedure } from './recalculate-aggregates';
import { trackEventProcedure } from './track-event';
import { trackEventsProcedure } from './track-events';
import { voidEventsProcedure } from './void-events';

export const usageRouter = router({
  trackEvent: trackEventProcedure,
  trackEvents: trackEventsProcedure,
  current: currentProcedure,
  check: checkProcedure,
  recalculateAggregates: recalculateAggregatesProcedure,
  jobStatus: jobStatusProcedure,
  voidEvents: voidEventsProcedure,
});
