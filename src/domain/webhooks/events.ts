import { hash } from 'node:crypto';

export const WEBHOOK_EVENT_TYPES = ['usage.threshold.warning', 'usage.threshold.exceeded', 'usage.overage.detected', 'usage.forecast.breach', 'billing.sync.failed'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** What a receiver gets: the same envelope for every event type. */
export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  createdAt: string;
  data: Record<string, unknown>;
}

/**
 * The id of the event a fact stands for (a UUID, version 8), the same every time it is
 * derived: an alert published before its row is claimed (see breach-alerts) is published
 * again under the same id if the claim never happened, and deliveries are unique per
 * endpoint and event id, so a receiver gets it once.
 */
export function deterministicEventId(...parts: string[]): string {
  const hex = hash('sha256', parts.join('\u0000'), 'hex').slice(0, 32).split('');
  hex[12] = '8'; // version 8: application-defined
  hex[16] = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16); // RFC 9562 variant
  const h = hex.join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
