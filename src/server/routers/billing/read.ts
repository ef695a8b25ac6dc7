import { z } from 'zod';
import { billingHealth, billingUsageReport, billingUsageSummary, listReconciliation } from '../../../domain/billing/read';
import { procedure, requireTenant } from '../../trpc';
import { instantSchema } from '../schemas';
import { connectionSchema } from './schemas';

const readers = { roles: ['owner', 'member', 'read'] as const, scope: 'tenant' as const };

export const healthProcedure = procedure({ ...readers, roles: [...readers.roles] })
  .input(z.strictObject({}).default({}))
  .output(
    z.object({
      enabled: z.boolean(),
      connected: z.boolean(),
      connections: z.array(connectionSchema),
      lastReportAt: z.string().nullable(),
      backlog: z.number(),
      oldestUnreportedWindow: z.string().nullable(),
      failedCount: z.number(),
      failures: z.array(
        z.object({
          id: z.string(), kind: z.string(), reason: z.string(), licenseId: z.string().nullable(), overageId: z.string().nullable(), hour: z.string().nullable(),
          identifier: z.string(), attempts: z.number(), lastError: z.string().nullable(), createdAt: z.string(),
        }),
      ),
      lastReconciliationAt: z.string().nullable(),
      openDifferences: z.number(),
      meterErrorReports: z.object({ count: z.number(), recent: z.array(z.object({ eventId: z.string(), receivedAt: z.string(), detail: z.unknown() })) }),
    }),
  )
  .query(({ ctx }) => billingHealth(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment));

export const usageSummaryProcedure = procedure({ ...readers, roles: [...readers.roles] })
  .input(z.strictObject({ licenseId: z.uuid(), periodStart: instantSchema.optional() }))
  .output(
    z.object({
      licenseId: z.string(),
      periodStart: z.string(),
      periodEnd: z.string(),
      usageTypes: z.array(
        z.object({
          usageType: z.string(), eventName: z.string(), quantity: z.string(), unitMultiplier: z.string(), reportedUnits: z.string(), pendingUnits: z.string(),
          unitAmountDecimal: z.string().nullable(), amountCents: z.number().nullable(), overageFeesCents: z.number(),
        }),
      ),
      overageFeesCents: z.number(),
      estimatedTotalCents: z.number(),
    }),
  )
  .query(({ ctx, input }) => billingUsageSummary(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment, input));

export const usageReportProcedure = procedure({ ...readers, roles: [...readers.roles] })
  .input(z.strictObject({ licenseId: z.uuid(), from: instantSchema, to: instantSchema }))
  .output(
    z.object({
      licenseId: z.string(),
      days: z.array(
        z.object({ day: z.string(), usageType: z.string(), quantity: z.string(), reportedUnits: z.string(), creditedUnits: z.string(), invoicedUnits: z.string(), pendingCalls: z.number() }),
      ),
    }),
  )
  .query(({ ctx, input }) => billingUsageReport(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment, input));

export const reconciliationProcedure = procedure({ ...readers, roles: [...readers.roles] })
  .input(z.strictObject({ licenseId: z.uuid().optional(), from: z.iso.date(), to: z.iso.date() }))
  .output(
    z.object({
      items: z.array(
        z.object({
          licenseId: z.string(), meterId: z.string(), day: z.string(), stripeUnits: z.string(), ledgerUnits: z.string(), rollupUnits: z.string(),
          difference: z.string(), healed: z.boolean(), checkedAt: z.string(),
        }),
      ),
    }),
  )
  .query(({ ctx, input }) =>
    listReconciliation(ctx.services.billing, requireTenant(ctx.tenantId), ctx.environment, { licenseId: input.licenseId, from: new Date(`${input.from}T00:00:00Z`), to: new Date(`${input.to}T00:00:00Z`) }),
  );
