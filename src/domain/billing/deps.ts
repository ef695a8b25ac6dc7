import type pg from 'pg';
import type { PrismaClient } from '../../generated/prisma/client';
import type { Logger } from '../../lib/logger';
import type { SecretBox } from '../../lib/secret-box';
import type { WebhookDispatchDeps } from '../webhooks/dispatch';
import type { StripeGateway } from './stripe-gateway';
import type { QuotaLimitsCache } from '../quotas/enforcer';
import type { AccountRateGate } from './rate-gate';

/** The collaborators of every billing operation, built once per process by src/app.ts. */
export interface BillingDeps {
  prisma: PrismaClient;
  pool: pg.Pool;
  logger: Logger;
  /** Opens and seals the tenants' Stripe secrets; null when BILLING_ENCRYPTION_KEY is unset. */
  box: SecretBox | null;
  gateway: StripeGateway;
  /** billing.sync.failed goes out like every other webhook event. */
  webhooks: WebhookDispatchDeps;
  /** A subscription webhook that changes a license's plan makes its limits be read again. */
  limits: QuotaLimitsCache;
  send: SendOptions;
  /** The rate gate of one Stripe connection, shared across worker processes (src/app.ts: a Redis token bucket). */
  rateGateFor?: (connectionId: string, rps: number) => AccountRateGate;
  /** Counts reconciliation differences for /metrics. */
  onReconciliationDifferences?: (count: number) => void;
  now?: () => Date;
}

export interface SendOptions {
  /** Requests per second to one Stripe account. */
  rps: number;
  /** Requests in flight to one Stripe account. */
  concurrency: number;
  /** How long one run keeps sending. */
  budgetMs: number;
  /** First retry delay; doubled per attempt, capped at a minute (or Stripe's Retry-After). */
  retryBaseMs: number;
  /** A claimed call not recorded after this long (its sender died) is claimed again. */
  leaseMs: number;
  /** Attempts before a retryable call is given up and shown as failed. */
  maxAttempts: number;
}

export const nowOf = (deps: Pick<BillingDeps, 'now'>): Date => deps.now?.() ?? new Date();
