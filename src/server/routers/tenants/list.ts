import { z } from 'zod';
import { listTenants } from '../../../domain/tenants/tenants';
import { procedure } from '../../trpc';
import { pageOutput } from '../schemas';
import { tenantSchema } from './schemas';

export const listTenantsProcedure = procedure({ roles: [], scope: 'platform' })
  .input(
    z
      .strictObject({ limit: z.number().int().min(1).max(100).default(50), cursor: z.uuid().optional() })
      .default({ limit: 50 }),
  )
  .output(pageOutput(tenantSchema))
  .query(({ ctx, input }) => listTenants(ctx.services.db.prisma, input));
