import { z } from 'zod';
import { removeThreshold } from '../../../domain/quotas/thresholds';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';

export const removeThresholdProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'threshold' })
  .input(idInput)
  .output(z.object({ id: z.string(), licenseId: z.string(), removed: z.literal(true) }))
  .mutation(async ({ ctx, input }) => {
    const removed = await removeThreshold(ctx.services.db.prisma, requireTenant(ctx.tenantId), input.id);
    ctx.services.quota.invalidate(removed.licenseId);
    return removed;
  });
