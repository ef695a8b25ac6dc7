import { router } from '../../trpc';
import { eraseUserProcedure } from './erase-user';
import { exportUserProcedure } from './export-user';

export const privacyRouter = router({
  eraseUser: eraseUserProcedure,
  exportUser: exportUserProcedure,
});
