import { z } from 'zod';
import { listOverages } from '../../../domain/overages/overages';
import { procedure, requireTenant } from '../../trpc';
import { pageInput, pageOutput } from '../schemas';
import { overageSchema, overageStatusSchema } from './schemas';

export const listOveragesProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({ licenseId: z.uuid().optional(), status: overageStatusSchema.optional(), ...pageInput }).default({ limit: 50 }))
  .output(pageOutput(overageSchema))
  .query(({ ctx, input }) => listOverages(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input));
