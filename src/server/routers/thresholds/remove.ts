import { z } from 'zod';
import { removeThreshold } from '../../../domain/quotas/thresholds';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';

export const removeThresholdProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'threshold' })
  .input(idInput)
  .output(z.object({ id: z.string(), licenseId: z.string(), removed: z.literal(true) }))
  .mutation(async ({ ctx, input }) => {
    return removeThreshold(ctx.services.thresholds, requireTenant(ctx.tenantId), ctx.environment, input.id);
  });
