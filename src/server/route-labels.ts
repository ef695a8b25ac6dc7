import { EXPORT_KINDS } from '../domain/analytics/export';
import { ADMIN_QUEUES_PATH } from './admin-queues';
import { EXPORT_PATH } from './export-routes';

export const TRPC_BASE = '/api/trpc/';
export const UNKNOWN_ROUTE = 'unknown';
/** Every OPTIONS request (CORS preflights above all), whatever its path: one label, no procedure's latency. */
export const OPTIONS_ROUTE = 'OPTIONS';

/**
 * The `procedure` label of the HTTP metrics, from a closed set: every procedure of the router,
 * the export routes by their template, /health, /metrics, the queue dashboard, `OPTIONS` for
 * every OPTIONS request (a preflight is not a call of the procedure its path names), else `unknown`.
 * A label made from whatever path a client sends would grow the registry without bound (each
 * new value is a new series held until the process ends).
 */
export function createRouteLabeler(procedureNames: Iterable<string>): (pathname: string, method?: string) => string {
  const labels = new Map<string, string>();
  for (const name of procedureNames) labels.set(`${TRPC_BASE}${name}`, name);
  for (const kind of EXPORT_KINDS) labels.set(`${EXPORT_PATH}${kind}`, `${EXPORT_PATH}${kind}`);
  labels.set('/health', '/health');
  labels.set('/metrics', '/metrics');
  labels.set(ADMIN_QUEUES_PATH, ADMIN_QUEUES_PATH);
  return (pathname, method) => {
    if (method === 'OPTIONS') return OPTIONS_ROUTE;
    const known = labels.get(pathname);
    if (known !== undefined) return known;
    // the dashboard's own pages and assets, all under one label
    if (pathname.startsWith('/api/stripe/webhook/')) return '/api/stripe/webhook/:tenantId';
    return pathname.startsWith(`${ADMIN_QUEUES_PATH}/`) ? ADMIN_QUEUES_PATH : UNKNOWN_ROUTE;
  };
}
