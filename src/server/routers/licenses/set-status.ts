import { z } from 'zod';
import { setLicenseStatus } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { licenseSchema, licenseStatusSchema } from './schemas';

export const setLicenseStatusProcedure = procedure({ roles: ['owner', 'member'], scope: 'tenant', target: 'license' })
  .input(z.strictObject({ id: z.uuid(), status: licenseStatusSchema }))
  .output(licenseSchema)
  .mutation(({ ctx, input }) =>
    setLicenseStatus(ctx.services.licenses, requireTenant(ctx.tenantId), ctx.environment, input.id, input.status),
  );
