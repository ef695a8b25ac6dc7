import { z } from 'zod';
import { usageEventInputSchema } from '../../../domain/usage/event-schema';
import { EXPORT_PAGE_MAX } from '../../../domain/privacy/export';
import { jsonValue } from '../schemas';

/** A user id as events carry it: 1..256 characters, no NUL or unpaired surrogates. */
export const userIdSchema = usageEventInputSchema.shape.userId.unwrap().min(1);

export const eraseUserInput = z.strictObject({
  userId: userIdSchema,
  licenseId: z.uuid().optional(),
});

export const erasureReportSchema = z.object({
  id: z.string(),
  pseudonym: z.string().nullable(),
  events: z.number().int(),
  idempotencyKeys: z.number().int(),
  auditLogs: z.number().int(),
  webhookDeliveries: z.number().int(),
});

export const exportUserInput = z.strictObject({
  userId: userIdSchema,
  licenseId: z.uuid().optional(),
  limit: z.number().int().min(1).max(EXPORT_PAGE_MAX).default(EXPORT_PAGE_MAX),
  cursor: z.string().max(300).optional(),
});

const exportedEvent = z.object({
  id: z.string(),
  usageType: z.string(),
  quantity: z.string(),
  occurredAt: z.string(),
  receivedAt: z.string(),
  idempotencyKey: z.string().nullable(),
  platform: z.string().nullable(),
  deviceType: z.string().nullable(),
  userId: z.string(),
  userEmail: z.string().nullable(),
  organization: z.string().nullable(),
  route: z.string().nullable(),
  method: z.string().nullable(),
  statusCode: z.number().nullable(),
  durationMs: z.number().nullable(),
  sdkVersion: z.string().nullable(),
  ipAddress: z.string().nullable(),
  country: z.string().nullable(),
  properties: jsonValue,
  /** Set for a voided event: still held (so part of the user's data), counted nowhere. */
  voidedAt: z.string().nullable(),
  voidReason: z.string().nullable(),
});

export const userExportSchema = z.object({
  userId: z.string(),
  generatedAt: z.string(),
  eventsInPage: z.number().int(),
  licenses: z.array(z.object({ licenseId: z.string(), name: z.string().nullable(), externalId: z.string().nullable(), events: z.array(exportedEvent) })),
  nextCursor: z.string().nullable(),
  auditLogs: z.array(
    z.object({ id: z.string(), action: z.string(), targetType: z.string().nullable(), targetId: z.string().nullable(), metadata: jsonValue, createdAt: z.string() }),
  ),
  webhookDeliveries: z.array(z.object({ id: z.string(), eventType: z.string(), payload: jsonValue, createdAt: z.string() })),
});
