import { router } from '../../trpc';
import { getJobProcedure } from './get';
import { listJobsProcedure } from './list';
import { triggerJobProcedure } from './trigger';

export const jobsRouter = router({
  list: listJobsProcedure,
  get: getJobProcedure,
  trigger: triggerJobProcedure,
});
