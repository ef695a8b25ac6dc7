import { router } from '../../trpc';
import { createThresholdProcedure } from './create';
import { listThresholdsProcedure } from './list';
import { removeThresholdProcedure } from './remove';
import { thresholdStatusProcedure } from './status';
import { updateThresholdProcedure } from './update';

export const thresholdsRouter = router({
  create: createThresholdProcedure,
  list: listThresholdsProcedure,
  update: updateThresholdProcedure,
  remove: removeThresholdProcedure,
  status: thresholdStatusProcedure,
});
