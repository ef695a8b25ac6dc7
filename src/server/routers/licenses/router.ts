import { router } from '../../trpc';
import { createLicenseProcedure } from './create';
import { deleteLicenseProcedure } from './delete';
import { getLicenseProcedure } from './get';
import { listLicensesProcedure } from './list';
import { setLicenseStatusProcedure } from './set-status';
import { updateLicenseProcedure } from './update';

export const licensesRouter = router({
  create: createLicenseProcedure,
  get: getLicenseProcedure,
  list: listLicensesProcedure,
  update: updateLicenseProcedure,
  setStatus: setLicenseStatusProcedure,
  delete: deleteLicenseProcedure,
});
