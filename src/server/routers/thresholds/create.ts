import { createThreshold } from '../../../domain/quotas/thresholds';
import { procedure, requireTenant } from '../../trpc';
import { createThresholdInput, thresholdSchema } from './schemas';

export const createThresholdProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'threshold' })
  .input(createThresholdInput)
  .output(thresholdSchema)
  .mutation(async ({ ctx, input }) => {
    return createThreshold(ctx.services.thresholds, requireTenant(ctx.tenantId), ctx.environment, input);
  });
