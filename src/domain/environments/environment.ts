import type { Db } from '../../lib/db';
import { AppError } from '../../lib/errors';
import type { KeyEnvironment } from '../api-keys/key-material';

/**
 * Test and live never mix. Every license (and webhook endpoint) belongs to one environment,
 * fixed at creation; a key reaches only the licenses of its own environment (others are "not
 * found", like another tenant's), and every view, job and webhook stays within one. Domain
 * operations take the caller's environment as plain data, beside the tenant id.
 */
export type Environment = KeyEnvironment;

export const ENVIRONMENTS = ['live', 'test'] as const satisfies readonly Environment[];

export function isEnvironment(value: unknown): value is Environment {
  return value === 'live' || value === 'test';
}

/**
 * The `licenseId` filter of a tenant-wide list of rows a license owns (thresholds, alerts,
 * overages, forecasts): the licenses of this tenant and environment, deleted ones too (their
 * rows stay listed); with `licenseId`, that license alone if it is one of them, else none, so a
 * license of the other environment lists nothing, as another tenant's does.
 */
export async function licensesOfEnvironment(
  db: Db,
  tenantId: string,
  environment: Environment,
  licenseId?: string,
): Promise<{ in: string[] }> {
  const rows = await db.license.findMany({
    where: { tenantId, environment, ...(licenseId ? { id: licenseId } : {}) },
    select: { id: true },
  });
  return { in: rows.map((r) => r.id) };
}

/** A license of this tenant and environment (not deleted), or NOT_FOUND, as another tenant's would be. */
export async function assertLicenseInEnvironment(db: Db, tenantId: string, environment: Environment, licenseId: string): Promise<void> {
  const found = await db.license.count({ where: { id: licenseId, tenantId, environment, deletedAt: null } });
  if (!found) throw new AppError('NOT_FOUND', 'license not found');
}

/**
 * The environment of something a caller creates (a license, an API key): the caller's own
 * unless it names one. Only a caller that `mayChoose` may name the other (a platform operator;
 * for API keys also a live owner): a test key that could make live licenses or keys would be a
 * way from test into live.
 */
export function environmentOfNew(own: Environment, requested: Environment | undefined, mayChoose: boolean, what: string): Environment {
  if (requested === undefined || requested === own || mayChoose) return requested ?? own;
  const message = `must be "${own}", the environment of the key (a ${own} key creates ${own} ${what} only)`;
  throw new AppError('BAD_REQUEST', `environment: ${message}`, undefined, { issues: [{ path: ['environment'], message, code: 'custom' }] });
}
