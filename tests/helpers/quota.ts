import type { TestApp } from './harness';
import { deleteKeys, keysWithPrefix } from '../../src/lib/redis';

/** A license with its own hard limit on `usageType` (enterprise plan: nothing else limits it). */
export async function licenseWithLimit(
  app: TestApp,
  ownerKey: string,
  usageType: string,
  limitQuantity: number | string,
  extra: Record<string, unknown> = {},
) {
  const license = await app.createLicense(ownerKey);
  const threshold = await app.call('thresholds.create', { licenseId: license.id, usageType, periodType: 'daily', limitQuantity, ...extra }, ownerKey);
  if (threshold.status !== 200) throw new Error(`thresholds.create failed: ${JSON.stringify(threshold.body)}`);
  return { licenseId: license.id, thresholdId: threshold.data.id as string };
}

/** Deletes this app's quota counters, as a Redis restart (or FLUSHALL) would; never touches other runs' keys. */
export async function dropQuotaCounters(app: TestApp): Promise<number> {
  return deleteKeys(app.services.redis, await keysWithPrefix(app.services.redis, `${app.prefix}quota:`));
}
