export const WEBHOOK_EVENT_TYPES = ['usage.threshold.warning', 'usage.threshold.exceeded', 'usage.overage.detected', 'usage.forecast.breach'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** What a receiver gets: the same envelope for every event type. */
export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  createdAt: string;
  data: Record<string, unknown>;
}
