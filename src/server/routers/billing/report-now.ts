import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { hourWindow } from '../../../domain/jobs/catalog';
import { procedure, requireTenant } from '../../trpc';

/** Queues a billing.usage.report run of the caller's tenant now (a run of its own, whatever ran before). */
export const reportNowProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'job' })
  .input(z.strictObject({}).default({}))
  .output(z.object({ jobId: z.string() }))
  .mutation(async ({ ctx }) => {
    const tenantId = requireTenant(ctx.tenantId);
    const job = await ctx.services.queues.enqueue('billing.usage.report', { window: hourWindow(new Date()), tenantId }, { rerunTag: `now-${randomUUID().slice(0, 8)}` });
    return { jobId: job.id! };
  });
