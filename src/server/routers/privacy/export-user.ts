import { exportUser } from '../../../domain/privacy/export';
import { procedure, requireTenant } from '../../trpc';
import { exportUserInput, userExportSchema } from './schemas';

/**
 * A mutation (POST), though it changes nothing: the user id travels in the body, not in a URL
 * that proxies and access logs keep, and reading a person's data is audited.
 */
export const exportUserProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'user-export' })
  .input(exportUserInput)
  .output(userExportSchema)
  .mutation(({ ctx, input }) => exportUser(ctx.services.db.pool, { tenantId: requireTenant(ctx.tenantId), environment: ctx.environment, ...input }));
