import type pg from 'pg';
import type { Logger } from '../../lib/logger';
import type { WebhookDispatchDeps } from '../webhooks/dispatch';
import { recordLevelCrossings } from '../alerts/alerts';
import { upsertOverage } from '../overages/overages';
import type { Crossings } from './enforcer';

/** What follows a crossed level or an overage: an alert or overage row and its webhook. */
export interface ReactionDeps {
  pool: pg.Pool;
  webhooks: WebhookDispatchDeps;
  logger: Logger;
}

/**
 * What ingestion does once events are stored. Failures are logged, not thrown: the event is
 * stored, and the hourly usage.thresholds.check finds whatever was missed.
 */
export async function reactToCrossings(deps: ReactionDeps, crossings: Crossings): Promise<void> {
  if (crossings.levels.length === 0 && crossings.overages.length === 0) return;
  try {
    await recordLevelCrossings(deps, crossings.levels, 'ingestion');
    for (const o of crossings.overages) await upsertOverage(deps, o, false);
  } catch (err) {
    deps.logger.error({ err }, 'could not record alerts or overages at ingestion; the hourly check will');
  }
}
