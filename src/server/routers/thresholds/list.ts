import { z } from 'zod';
import { listThresholds } from '../../../domain/quotas/thresholds';
import { procedure, requireTenant } from '../../trpc';
import { thresholdSchema } from './schemas';

export const listThresholdsProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({ licenseId: z.uuid().optional() }).default({}))
  .output(z.object({ items: z.array(thresholdSchema) }))
  .query(({ ctx, input }) => listThresholds(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input));
