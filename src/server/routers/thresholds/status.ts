import { z } from 'zod';
import { thresholdStatus } from '../../../domain/quotas/thresholds';
import { procedure, requireTenant } from '../../trpc';
import { thresholdStatusSchema } from './schemas';

export const thresholdStatusProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({ licenseId: z.uuid() }))
  .output(z.object({ thresholds: z.array(thresholdStatusSchema) }))
  .query(({ ctx, input }) =>
    thresholdStatus({ pool: ctx.services.db.pool, prisma: ctx.services.db.prisma }, requireTenant(ctx.tenantId), ctx.environment, input.licenseId),
  );
