import { z } from 'zod';
import { connectStripe, disconnectStripe } from '../../../domain/billing/connections';
import { procedure, requireTenant } from '../../trpc';
import { connectInput, connectionSchema, modeSchema } from './schemas';

/** The secrets go in and never come out: the answer names the key by its last four characters. */
export const connectProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'billing_connection' })
  .input(connectInput)
  .output(connectionSchema)
  .mutation(({ ctx, input }) => connectStripe(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment, input));

export const disconnectProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'billing_connection' })
  .input(z.strictObject({ mode: modeSchema.optional() }).default({}))
  .output(z.object({ disconnected: z.number() }))
  .mutation(({ ctx, input }) => disconnectStripe(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment, input.mode));
