import { z } from 'zod';
import { listMeters, setPlanPrice, upsertMeter } from '../../../domain/billing/links';
import { procedure, requireTenant } from '../../trpc';
import { meterSchema, modeSchema, planPriceInput, upsertMeterInput } from './schemas';

export const upsertMeterProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'billing_meter' })
  .input(upsertMeterInput)
  .output(meterSchema)
  .mutation(({ ctx, input }) => upsertMeter(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment, input));

export const listMetersProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({}).default({}))
  .output(z.object({ items: z.array(meterSchema) }))
  .query(async ({ ctx }) => ({ items: await listMeters(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment) }));

export const setPlanPriceProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'billing_plan_price' })
  .input(planPriceInput)
  .output(z.object({ items: z.array(z.object({ mode: modeSchema, stripePriceId: z.string(), plan: z.string() })) }))
  .mutation(async ({ ctx, input }) => ({ items: await setPlanPrice(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment, input) }));
