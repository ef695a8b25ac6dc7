import { z } from 'zod';
import { createStripeCustomer } from '../../../domain/billing/links';
import { procedure, requireTenant } from '../../trpc';
import { modeSchema } from './schemas';

export const createCustomerProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'license' })
  .input(z.strictObject({ licenseId: z.uuid(), email: z.email().max(254).optional() }))
  .output(z.object({ licenseId: z.string(), stripeCustomerId: z.string(), mode: modeSchema }))
  .mutation(({ ctx, input }) => createStripeCustomer(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment, input));
