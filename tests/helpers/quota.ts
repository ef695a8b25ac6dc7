import type { TestApp } from './harness';
import { deleteKeys, keysWithPrefix } from '../../src/lib/redis';

/**
 * A license with its own hard limit on `usageType` (enterprise plan: nothing else limits it);
 * `extra` goes to the threshold, `license` to the license (e.g. its timezone).
 */
export async function licenseWithLimit(
  app: TestApp,
  ownerKey: string,
  usageType: string,
  limitQuantity: number | string,
  extra: Record<string, unknown> = {},
  license: Record<string, unknown> = {},
) {
  const created = await app.createLicense(ownerKey, license);
  const threshold = await app.call('thresholds.create', { licenseId: created.id, usageType, periodType: 'daily', limitQuantity, ...extra }, ownerKey);
  if (threshold.status !== 200) throw new Error(`thresholds.create failed: ${JSON.stringify(threshold.body)}`);
  return { licenseId: created.id, thresholdId: threshold.data.id as string };
}

/** Deletes this app's quota counters, as a Redis restart (or FLUSHALL) would; never touches other runs' keys. */
export async function dropQuotaCounters(app: TestApp): Promise<number> {
  return deleteKeys(app.services.redis, await keysWithPrefix(app.services.redis, `${app.prefix}quota:`));
}
