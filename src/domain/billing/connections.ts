import { AppError } from '../../lib/errors';
import { DAY_MS, HOUR_MS } from '../../lib/time';
import type { ApiKeyEnvironment } from '../../generated/prisma/client';
import { deterministicEventId } from '../webhooks/events';
import { nowOf, type BillingDeps } from './deps';

export type BillingMode = ApiKeyEnvironment;

/**
 * The id of a tenant's connection of one mode, derived from both: calls left in the outbox by a
 * disconnect go out after a reconnect, and a mode's calls can be found without the row.
 */
export function connectionIdOf(tenantId: string, mode: BillingMode): string {
  return deterministicEventId('billing-connection', tenantId, mode);
}

/** sk_test_/rk_test_ keys reach Stripe's test mode, sk_live_/rk_live_ its live mode. */
export function modeOfKey(secretKey: string): BillingMode {
  const match = /^(?:sk|rk)_(test|live)_/.exec(secretKey);
  if (!match) throw new AppError('BAD_REQUEST', 'secretKey: must be a Stripe secret key (sk_test_…, sk_live_…, rk_test_… or rk_live_…)');
  return match[1] as BillingMode;
}

export interface ConnectionView {
  id: string;
  mode: BillingMode;
  keyHint: string;
  currency: string;
  reportFrom: string;
  webhookPath: string;
  createdAt: string;
  updatedAt: string;
}

export interface OpenConnection {
  id: string;
  tenantId: string;
  mode: BillingMode;
  secretKey: string;
  webhookSecret: string;
  currency: string;
  reportFrom: Date;
}

function view(row: { id: string; tenantId: string; mode: BillingMode; keyHint: string; currency: string; reportFrom: Date; createdAt: Date; updatedAt: Date }): ConnectionView {
  return {
    id: row.id,
    mode: row.mode,
    keyHint: row.keyHint,
    currency: row.currency,
    reportFrom: row.reportFrom.toISOString(),
    webhookPath: `/api/stripe/webhook/${row.tenantId}`,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

function requireBox(deps: Pick<BillingDeps, 'box'>) {
  if (!deps.box) throw new AppError('BAD_REQUEST', 'billing is not enabled on this server: its operator must set BILLING_ENCRYPTION_KEY');
  return deps.box;
}

/**
 * Connects (or reconnects) the tenant's Stripe account of the key's mode. Secrets are sealed
 * before they reach the database and never leave it again except to call Stripe.
 * Usage is reported from `reportFrom` (at most 34 days back: Stripe refuses older meter events;
 * by default the current hour).
 */
export async function connectStripe(
  deps: Pick<BillingDeps, 'prisma' | 'box' | 'now'>,
  tenantId: string,
  environment: BillingMode,
  args: { secretKey: string; webhookSecret: string; currency?: string; reportFrom?: Date },
): Promise<ConnectionView> {
  const box = requireBox(deps);
  const mode = modeOfKey(args.secretKey);
  // Test licenses are billed to a test-mode account only, live ones to a live account only.
  if (mode !== environment) {
    const message = `a ${environment} key connects a Stripe account in ${environment} mode only (sk_${environment}_… or rk_${environment}_…)`;
    throw new AppError('BAD_REQUEST', `secretKey: ${message}`, undefined, { issues: [{ path: ['secretKey'], message, code: 'custom' }] });
  }
  const now = nowOf(deps);
  const floor = now.getTime() - 34 * DAY_MS;
  if (args.reportFrom && (args.reportFrom.getTime() < floor || args.reportFrom.getTime() > now.getTime() + HOUR_MS)) {
    throw new AppError('BAD_REQUEST', 'reportFrom: must be within the last 34 days (Stripe refuses older meter events)');
  }
  const reportFrom = new Date(Math.floor((args.reportFrom ?? now).getTime() / HOUR_MS) * HOUR_MS);
  const data = {
    secretKeyCipher: box.seal(args.secretKey),
    webhookSecretCipher: box.seal(args.webhookSecret),
    keyHint: args.secretKey.slice(-4),
    currency: (args.currency ?? 'usd').toLowerCase(),
    reportFrom,
  };
  const row = await deps.prisma.billingConnection.upsert({
    where: { tenantId_mode: { tenantId, mode } },
    // The id is derived from tenant and mode: calls left in the outbox by a disconnect go out after a reconnect.
    create: { id: connectionIdOf(tenantId, mode), tenantId, mode, ...data },
    update: data,
  });
  return view(row);
}

/** Removes the tenant's connection(s); calls still in the outbox wait until it connects again. */
export async function disconnectStripe(deps: Pick<BillingDeps, 'prisma'>, tenantId: string, environment: BillingMode, mode?: BillingMode): Promise<{ disconnected: number }> {
  if (mode && mode !== environment) {
    const message = `a ${environment} key disconnects the ${environment} account only`;
    throw new AppError('BAD_REQUEST', `mode: ${message}`, undefined, { issues: [{ path: ['mode'], message, code: 'custom' }] });
  }
  const { count } = await deps.prisma.billingConnection.deleteMany({ where: { tenantId, mode: environment } });
  return { disconnected: count };
}

export async function listConnections(deps: Pick<BillingDeps, 'prisma'>, tenantId: string): Promise<ConnectionView[]> {
  const rows = await deps.prisma.billingConnection.findMany({ where: { tenantId }, orderBy: { mode: 'asc' } });
  return rows.map(view);
}

/** The connection with its secrets opened, for a call to Stripe; null when there is none (or no key to open it). */
export async function openConnection(deps: Pick<BillingDeps, 'prisma' | 'box'>, where: { id: string } | { tenantId: string; mode: BillingMode }): Promise<OpenConnection | null> {
  if (!deps.box) return null;
  const row =
    'id' in where
      ? await deps.prisma.billingConnection.findUnique({ where: { id: where.id } })
      : await deps.prisma.billingConnection.findUnique({ where: { tenantId_mode: where } });
  if (!row) return null;
  return {
    id: row.id,
    tenantId: row.tenantId,
    mode: row.mode,
    secretKey: deps.box.open(row.secretKeyCipher),
    webhookSecret: deps.box.open(row.webhookSecretCipher),
    currency: row.currency,
    reportFrom: row.reportFrom,
  };
}

export async function requireConnection(deps: Pick<BillingDeps, 'prisma' | 'box'>, tenantId: string, mode: BillingMode): Promise<OpenConnection> {
  requireBox(deps);
  const connection = await openConnection(deps, { tenantId, mode });
  if (!connection) throw new AppError('CONFLICT', `no Stripe account connected in ${mode} mode: call billing.connect first`);
  return connection;
}

/** The mode a call means: the one asked for, else the tenant's only connection's, else live. */
export async function resolveMode(deps: Pick<BillingDeps, 'prisma'>, tenantId: string, mode: BillingMode | undefined): Promise<BillingMode> {
  if (mode) return mode;
  const rows = await deps.prisma.billingConnection.findMany({ where: { tenantId }, select: { mode: true } });
  return rows.length === 1 ? rows[0]!.mode : 'live';
}
