import { updateThreshold } from '../../../domain/quotas/thresholds';
import { procedure, requireTenant } from '../../trpc';
import { thresholdSchema, updateThresholdInput } from './schemas';

export const updateThresholdProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'threshold' })
  .input(updateThresholdInput)
  .output(thresholdSchema)
  .mutation(async ({ ctx, input: { id, ...fields } }) => {
    return updateThreshold(ctx.services.thresholds, requireTenant(ctx.tenantId), ctx.environment, id, fields);
  });
