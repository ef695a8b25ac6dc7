import { z } from 'zod';
import { listLicenses } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { pageInput, pageOutput } from '../schemas';
import { licenseSchema, licenseStatusSchema } from './schemas';

export const listLicensesProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({ status: licenseStatusSchema.optional(), ...pageInput }).default({ limit: 50 }))
  .output(pageOutput(licenseSchema))
  .query(({ ctx, input }) => listLicenses(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input));
