import { router } from '../../trpc';
import { createTenantProcedure } from './create';
import { getTenantProcedure } from './get';
import { listTenantsProcedure } from './list';

export const tenantsRouter = router({
  create: createTenantProcedure,
  list: listTenantsProcedure,
  get: getTenantProcedure,
});
