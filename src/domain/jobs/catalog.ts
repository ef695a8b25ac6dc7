import { z } from 'zod';
import { DAY_MS } from '../../lib/time';

/**
 * Every job Tally runs, in one typed catalog shared by producers and workers: its payload
 * schema (parsed by the worker before the handler runs), its queue, attempts and backoff,
 * and the window it covers. A scheduled job's BullMQ id is `<name>@<window>`, so two
 * schedulers, a restart or a catch-up can never enqueue one window twice.
 */

const isoHour = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}Z$/, 'must be an hour like 2026-11-23T10Z');
const isoDate = z.iso.date();

// Webhook deliveries get their own queue so they never wait behind a long maintenance job.
// Stripe reporting has its own queue too: a long send (rate-limited by Stripe) must not hold up rollups.
export const QUEUES = ['maintenance', 'backfill', 'webhooks', 'billing'] as const;
export type QueueName = (typeof QUEUES)[number];

interface JobDefinition<S extends z.ZodType> {
  queue: QueueName;
  payload: S;
  attempts: number;
  /** Exponential backoff base, ms. */
  backoffMs: number;
  /** The window a payload covers (names the job id and the JobRun row); null when none. */
  windowOf: (payload: z.output<S>) => string | null;
  description: string;
}

function defineJob<S extends z.ZodType>(definition: JobDefinition<S>): JobDefinition<S> {
  return definition;
}

export const jobCatalog = {
  'usage.aggregate.hourly': defineJob({
    queue: 'maintenance',
    payload: z.object({ window: isoHour }).strict(),
    attempts: 8,
    backoffMs: 5_000,
    windowOf: (p) => p.window,
    description: 'Recompute the hourly rollups of one UTC hour, and every hour late events marked.',
  }),
  'usage.aggregate.daily': defineJob({
    queue: 'maintenance',
    payload: z.object({ window: isoDate }).strict(),
    attempts: 8,
    backoffMs: 5_000,
    windowOf: (p) => p.window,
    description: 'Recompute the daily rollups of every license-local date that ended on this UTC date.',
  }),
  'usage.cleanup.weekly': defineJob({
    queue: 'maintenance',
    payload: z.object({ window: isoDate }).strict(),
    attempts: 3,
    backoffMs: 60_000,
    windowOf: (p) => p.window,
    description: 'Retention: old raw events, idempotency keys, audit logs and job runs.',
  }),
  'usage.partitions.maintain': defineJob({
    queue: 'maintenance',
    payload: z.object({ window: isoDate }).strict(),
    attempts: 5,
    backoffMs: 10_000,
    windowOf: (p) => p.window,
    description: 'Create the next months of usage-event partitions ahead of time.',
  }),
  'usage.recalculate': defineJob({
    queue: 'backfill',
    payload: z
      .object({
        tenantId: z.uuid().nullable(),
        licenseId: z.uuid().nullable(),
        startDate: isoDate,
        endDate: isoDate,
      })
      .strict(),
    attempts: 5,
    backoffMs: 10_000,
    windowOf: (p) => `${p.startDate}..${p.endDate}`,
    description: 'Recompute hourly and daily rollups of a date range (admin backfill).',
  }),
  'usage.thresholds.check': defineJob({
    queue: 'maintenance',
    payload: z.object({ window: isoHour }).strict(),
    attempts: 5,
    backoffMs: 10_000,
    windowOf: (p) => p.window,
    description: 'Alerts for levels crossed and overages of every limited license that ingestion may have missed; finalizes overages of closed periods.',
  }),
  'usage.forecast.daily': defineJob({
    queue: 'maintenance',
    payload: z.object({ window: isoDate }).strict(),
    attempts: 5,
    backoffMs: 30_000,
    windowOf: (p) => p.window,
    description: 'Forecast the period totals of every limited license and usage type; record the accuracy of periods that closed.',
  }),
  'usage.forecast.alerts': defineJob({
    queue: 'maintenance',
    payload: z.object({ window: isoDate }).strict(),
    attempts: 5,
    backoffMs: 30_000,
    windowOf: (p) => p.window,
    description: 'Webhook usage.forecast.breach, once per limit and period, for limits the latest forecast says will be crossed.',
  }),
  'webhooks.deliver': defineJob({
    queue: 'webhooks',
    payload: z.object({ deliveryId: z.uuid() }).strict(),
    // 10 s, 20 s, … 21 min in all by default (WEBHOOK_RETRY_BASE_MS), then the delivery is FAILED.
    attempts: 8,
    backoffMs: 10_000,
    windowOf: (p) => p.deliveryId,
    description: 'POST one signed webhook delivery; retried with exponential backoff, each attempt logged.',
  }),
  'billing.usage.report': defineJob({
    queue: 'billing',
    payload: z.object({ window: isoHour, tenantId: z.uuid().nullable().optional() }).strict(),
    attempts: 5,
    backoffMs: 30_000,
    windowOf: (p) => (p.tenantId ? `${p.window}/${p.tenantId}` : p.window), // BullMQ ids take no colon
    description: 'Report to Stripe every rolled-up hour not yet billed (and corrections of reported ones), final approved overage fees, and send the outbox.',
  }),
  'billing.reconcile': defineJob({
    queue: 'billing',
    payload: z.object({ window: isoDate }).strict(),
    attempts: 5,
    backoffMs: 60_000,
    windowOf: (p) => p.window,
    description: "Compare Stripe's meter event summaries of one UTC date with the ledger and the rollups; record and heal differences.",
  }),
};

export type JobName = keyof typeof jobCatalog;
export type JobPayload<N extends JobName> = z.output<(typeof jobCatalog)[N]['payload']>;
export const JOB_NAMES = Object.keys(jobCatalog) as JobName[];

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(jobCatalog, name);
}

export function jobIdFor(name: JobName, window: string | null): string | undefined {
  return window === null ? undefined : `${name}@${window}`;
}

/** `2026-11-23T10Z` for the UTC hour starting at `date`. */
export function hourWindow(date: Date): string {
  return `${date.toISOString().slice(0, 13)}Z`;
}

export function parseHourWindow(window: string): Date {
  return new Date(`${window.slice(0, 13)}:00:00Z`);
}

export function dateWindow(date: Date): string {
  return date.toISOString().slice(0, 10);
}

export function parseDateWindow(window: string): Date {
  return new Date(`${window}T00:00:00Z`);
}

/**
 * The instant a forecast job of a date window looks from: now for today's window (the usual,
 * scheduled case), the end of that UTC date for an earlier one (a catch-up or a re-run sees
 * what there was then, and never overwrites a newer forecast).
 */
export function forecastCutOff(window: string, now = new Date()): Date {
  return new Date(Math.min(now.getTime(), parseDateWindow(window).getTime() + DAY_MS));
}
