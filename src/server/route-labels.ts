import { EXPORT_KINDS } from '../domain/analytics/export';
import { ADMIN_QUEUES_PATH } from './admin-queues';
import { EXPORT_PATH } from './export-routes';
import { DOCS_PATH } from './rest/docs';
import { CONSOLE_PATH } from './console/static';
import { OPENAPI_PATH, REST_ROUTES, templateOf } from './rest/routes';

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
  labels.set(OPENAPI_PATH, OPENAPI_PATH);
  labels.set(DOCS_PATH, DOCS_PATH);
  labels.set(CONSOLE_PATH, CONSOLE_PATH);
  const restTemplates = [...new Set(REST_ROUTES.map(templateOf))];
  return (pathname, method) => {
    if (method === 'OPTIONS') return OPTIONS_ROUTE;
    const known = labels.get(pathname);
    if (known !== undefined) return known;
    // the dashboard's and the API reference's own pages and assets, each under one label
    if (pathname.startsWith('/api/stripe/webhook/')) return '/api/stripe/webhook/:tenantId';
    if (pathname.startsWith(`${ADMIN_QUEUES_PATH}/`)) return ADMIN_QUEUES_PATH;
    if (pathname.startsWith(`${DOCS_PATH}/`)) return DOCS_PATH;
    // the web console's pages and files, whatever the path under it
    if (pathname.startsWith(`${CONSOLE_PATH}/`)) return CONSOLE_PATH;
    return restTemplateOf(restTemplates, pathname) ?? UNKNOWN_ROUTE;
  };
}

/**
 * The REST route template a path matches (`/api/v1/licenses/{id}` for `/api/v1/licenses/9b…`),
 * a literal segment before a `{field}` one; never the raw path.
 */
function restTemplateOf(templates: readonly string[], pathname: string): string | undefined {
  const segments = pathname.replace(/(.)\/$/, '$1').split('/');
  let best: { template: string; literals: number } | undefined;
  for (const template of templates) {
    const parts = template.split('/');
    if (parts.length !== segments.length) continue;
    let literals = 0;
    let ok = true;
    for (const [i, part] of parts.entries()) {
      if (part.startsWith('{')) {
        if (segments[i] === '') ok = false;
      } else if (part === segments[i]) literals++;
      else ok = false;
      if (!ok) break;
    }
    if (ok && (!best || literals > best.literals)) best = { template, literals };
  }
  return best?.template;
}
