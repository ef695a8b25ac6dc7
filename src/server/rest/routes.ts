import { z } from 'zod';
import { usageEventInputSchema } from '../../domain/usage/event-schema';
import { includeResultsField } from '../routers/usage/track-events';

/** Where the REST face lives; every route below is relative to it. */
export const REST_BASE = '/api/v1';
export const OPENAPI_PATH = `${REST_BASE}/openapi.json`;

export type RestMethod = 'GET' | 'POST' | 'PATCH' | 'DELETE';

/**
 * One REST route: a tRPC procedure under another name. Its input is the procedure's own input,
 * gathered from the path (a `{field}` segment is that input field), the query string (GET and
 * DELETE) or the JSON body (POST and PATCH), and checked by the procedure's own zod schema.
 */
export interface RestRoute {
  method: RestMethod;
  /** Relative to REST_BASE; `{name}` segments are input fields of the procedure. */
  path: string;
  /** The procedure it calls, e.g. `licenses.get`. */
  procedure: string;
  summary: string;
  tag: string;
  /** 201 for routes that create a resource; 200 otherwise. */
  status?: 200 | 201;
  /**
   * The body as the domain checks it, for the document only, where the procedure's schema
   * leaves part of it open (a batch's events are checked one by one, each refused on its own).
   */
  documentedBody?: z.ZodType;
  /** The answer, for the document only, where the procedure declares no `.output()` (usage.trackEvent, for speed). */
  documentedAnswer?: z.ZodType;
}

/**
 * The public procedures as REST routes. Admin and platform work (tenants, jobs, recomputation,
 * privacy, exports) stays on tRPC; the tenant's audit log and billing are here. Tests derive their cases from this table
 * (auth matrix, fuzz, twin comparison), so a new route is covered as soon as it is added.
 */
export const REST_ROUTES: readonly RestRoute[] = [
  {
    method: 'POST',
    path: '/events',
    procedure: 'usage.trackEvent',
    tag: 'usage',
    summary: 'Track one usage event',
    documentedAnswer: z.object({ eventId: z.string(), duplicate: z.boolean() }),
  },
  {
    method: 'POST',
    path: '/events/batch',
    procedure: 'usage.trackEvents',
    tag: 'usage',
    summary: 'Track up to 1,000 usage events, each accepted or rejected on its own',
    // the procedure takes `events: unknown[]` and judges each event itself: document the event
    documentedBody: z.strictObject({
      events: z.array(usageEventInputSchema).min(1).max(1000),
      includeResults: includeResultsField,
    }),
  },
  { method: 'GET', path: '/usage/check', procedure: 'usage.check', tag: 'usage', summary: 'Would this much more usage be admitted now? (records nothing)' },
  { method: 'POST', path: '/events/void', procedure: 'usage.voidEvents', tag: 'usage', summary: 'Void events sent by mistake (kept for the record, counted nowhere; owner, audited with the reason)' },

  { method: 'GET', path: '/licenses', procedure: 'licenses.list', tag: 'licenses', summary: 'List licenses (cursor pagination)' },
  { method: 'POST', path: '/licenses', procedure: 'licenses.create', tag: 'licenses', summary: 'Create a license', status: 201 },
  { method: 'GET', path: '/licenses/{id}', procedure: 'licenses.get', tag: 'licenses', summary: 'Get a license' },
  { method: 'PATCH', path: '/licenses/{id}', procedure: 'licenses.update', tag: 'licenses', summary: 'Update a license' },
  { method: 'DELETE', path: '/licenses/{id}', procedure: 'licenses.delete', tag: 'licenses', summary: 'Delete a license (soft delete)' },
  { method: 'POST', path: '/licenses/{id}/status', procedure: 'licenses.setStatus', tag: 'licenses', summary: "Set a license's status" },
  { method: 'GET', path: '/licenses/{licenseId}/usage', procedure: 'usage.current', tag: 'usage', summary: 'Current usage per usage type: used, limit, remaining, period, reset time' },
  { method: 'GET', path: '/licenses/{licenseId}/threshold-status', procedure: 'thresholds.status', tag: 'thresholds', summary: "Where a license stands against each of its thresholds" },
  { method: 'GET', path: '/licenses/{licenseId}/forecast', procedure: 'forecasts.get', tag: 'forecasts', summary: "A license's forecast for one usage type" },

  { method: 'GET', path: '/thresholds', procedure: 'thresholds.list', tag: 'thresholds', summary: 'List thresholds' },
  { method: 'POST', path: '/thresholds', procedure: 'thresholds.create', tag: 'thresholds', summary: 'Create a threshold', status: 201 },
  { method: 'PATCH', path: '/thresholds/{id}', procedure: 'thresholds.update', tag: 'thresholds', summary: 'Update a threshold' },
  { method: 'DELETE', path: '/thresholds/{id}', procedure: 'thresholds.remove', tag: 'thresholds', summary: 'Remove a threshold' },

  { method: 'GET', path: '/alerts', procedure: 'alerts.list', tag: 'alerts', summary: 'List usage alerts' },

  { method: 'GET', path: '/overages', procedure: 'overages.list', tag: 'overages', summary: 'List overages' },
  { method: 'POST', path: '/overages/{id}/approve', procedure: 'overages.approve', tag: 'overages', summary: 'Approve an overage for billing' },
  { method: 'POST', path: '/overages/{id}/waive', procedure: 'overages.waive', tag: 'overages', summary: 'Waive an overage' },

  { method: 'GET', path: '/analytics/usage', procedure: 'analytics.usage', tag: 'analytics', summary: 'Usage overview and time series' },
  { method: 'GET', path: '/analytics/breakdown', procedure: 'analytics.breakdown', tag: 'analytics', summary: 'Usage broken down by a dimension' },
  { method: 'GET', path: '/analytics/top-licenses', procedure: 'analytics.topLicenses', tag: 'analytics', summary: 'Licenses with the most usage' },

  { method: 'GET', path: '/forecasts', procedure: 'forecasts.list', tag: 'forecasts', summary: 'List forecasts' },
  { method: 'GET', path: '/forecasts/accuracy', procedure: 'forecasts.accuracy', tag: 'forecasts', summary: 'How far forecasts of closed periods were from the actual totals' },

  { method: 'POST', path: '/billing/connect', procedure: 'billing.connect', tag: 'billing', summary: 'Connect a Stripe account (secrets stored encrypted, never returned)' },
  { method: 'POST', path: '/billing/disconnect', procedure: 'billing.disconnect', tag: 'billing', summary: 'Disconnect Stripe' },
  { method: 'POST', path: '/billing/customers', procedure: 'billing.createCustomer', tag: 'billing', summary: "Create a license's Stripe customer and link it", status: 201 },
  { method: 'GET', path: '/billing/meters', procedure: 'billing.meters.list', tag: 'billing', summary: 'List the usage types mapped to Stripe meters' },
  { method: 'POST', path: '/billing/meters', procedure: 'billing.meters.upsert', tag: 'billing', summary: 'Map a usage type to a Stripe meter (created in Stripe when asked)' },
  { method: 'POST', path: '/billing/plan-prices', procedure: 'billing.planPrices.set', tag: 'billing', summary: 'Map a Stripe price to a plan tier (subscription sync)' },
  { method: 'POST', path: '/billing/report-now', procedure: 'billing.reportNow', tag: 'billing', summary: 'Report usage to Stripe now (queues a run)' },
  { method: 'GET', path: '/billing/health', procedure: 'billing.health', tag: 'billing', summary: 'Billing sync health: connection, backlog, failures, last reconciliation' },
  { method: 'GET', path: '/billing/reconciliation', procedure: 'billing.reconciliation', tag: 'billing', summary: "Differences found between Stripe's meter summaries, the ledger and the rollups" },
  { method: 'GET', path: '/licenses/{licenseId}/billing/summary', procedure: 'billing.usageSummary', tag: 'billing', summary: "A license's billing period: quantities, reported, pending, amounts" },
  { method: 'GET', path: '/licenses/{licenseId}/billing/report', procedure: 'billing.usageReport', tag: 'billing', summary: "A license's usage as reported to Stripe, per day" },

  { method: 'GET', path: '/audit-logs', procedure: 'auditLogs.list', tag: 'audit-logs', summary: "The tenant's audit log (cursor pagination)" },

  { method: 'GET', path: '/api-keys', procedure: 'apiKeys.list', tag: 'api-keys', summary: 'List API keys' },
  { method: 'POST', path: '/api-keys', procedure: 'apiKeys.create', tag: 'api-keys', summary: 'Create an API key (the secret is shown once)', status: 201 },
  { method: 'POST', path: '/api-keys/{id}/revoke', procedure: 'apiKeys.revoke', tag: 'api-keys', summary: 'Revoke an API key' },

  { method: 'GET', path: '/webhooks', procedure: 'webhooks.list', tag: 'webhooks', summary: 'List webhook endpoints' },
  { method: 'POST', path: '/webhooks', procedure: 'webhooks.create', tag: 'webhooks', summary: 'Create a webhook endpoint (the signing secret is shown once)', status: 201 },
  { method: 'PATCH', path: '/webhooks/{id}', procedure: 'webhooks.update', tag: 'webhooks', summary: 'Update a webhook endpoint' },
  { method: 'DELETE', path: '/webhooks/{id}', procedure: 'webhooks.delete', tag: 'webhooks', summary: 'Delete a webhook endpoint' },
  { method: 'POST', path: '/webhooks/{id}/rotate-secret', procedure: 'webhooks.rotateSecret', tag: 'webhooks', summary: "Rotate an endpoint's signing secret" },
  { method: 'GET', path: '/webhooks/deliveries', procedure: 'webhooks.deliveries', tag: 'webhooks', summary: 'List webhook deliveries' },
];

/** The input fields a route's path names, in order. */
export function pathFields(route: RestRoute): string[] {
  return [...route.path.matchAll(/\{([A-Za-z]+)\}/g)].map((m) => m[1]!);
}

/** Whether a route's input comes from the query string (else from a JSON body). */
export function readsQuery(route: RestRoute): boolean {
  return route.method === 'GET' || route.method === 'DELETE';
}

/** The full path template of a route, for documents and metric labels. */
export function templateOf(route: RestRoute): string {
  return `${REST_BASE}${route.path}`;
}

/**
 * The route a method and path name: a literal segment beats a `{field}` one, so
 * `/webhooks/deliveries` is not `/webhooks/{id}`. `allowed` lists the methods of the path
 * when no route has this method (a 405), and is empty for a path no route has (a 404).
 */
export function matchRoute(
  method: string,
  segments: readonly string[],
): { route: RestRoute; params: Record<string, string> } | { route: null; allowed: RestMethod[] } {
  const matches: { route: RestRoute; params: Record<string, string>; literals: number }[] = [];
  for (const route of REST_ROUTES) {
    const template = route.path.split('/').slice(1);
    if (template.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let literals = 0;
    let ok = true;
    for (const [i, part] of template.entries()) {
      const field = /^\{([A-Za-z]+)\}$/.exec(part)?.[1];
      if (field) params[field] = segments[i]!;
      else if (part === segments[i]) literals++;
      else {
        ok = false;
        break;
      }
    }
    if (ok) matches.push({ route, params, literals });
  }
  const best = Math.max(-1, ...matches.map((m) => m.literals));
  const literalMatches = matches.filter((m) => m.literals === best);
  const hit = literalMatches.find((m) => m.route.method === method) ?? matches.find((m) => m.route.method === method);
  if (hit) return { route: hit.route, params: hit.params };
  return { route: null, allowed: [...new Set(matches.map((m) => m.route.method))] };
}
