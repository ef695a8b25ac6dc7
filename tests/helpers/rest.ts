import { REST_BASE, REST_ROUTES, type RestRoute, pathFields, readsQuery } from '../../src/server/rest/routes';
import type { TestApp } from './harness';

export interface RestResult<T = any> {
  status: number;
  headers: Headers;
  /** The parsed answer: the procedure's data on success, `{ error }` on a refusal. */
  body: any;
  /** The body on success (2xx), else undefined. */
  data: T;
  text: string;
}

/** The REST route of a procedure (the first, when there were several). */
export function restRouteOf(procedure: string): RestRoute | undefined {
  return REST_ROUTES.find((r) => r.procedure === procedure);
}

const queryText = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));

/**
 * The request a client would send for a procedure input: the path's fields in the path, the rest
 * in the query string (GET, DELETE; arrays repeated) or as a JSON body (POST, PATCH).
 */
export function restRequest(route: RestRoute, input: unknown): { path: string; init: RequestInit } {
  const rest: Record<string, unknown> = input && typeof input === 'object' && !Array.isArray(input) ? { ...(input as Record<string, unknown>) } : {};
  let path = route.path;
  for (const field of pathFields(route)) {
    path = path.replace(`{${field}}`, encodeURIComponent(queryText(rest[field] ?? '')));
    delete rest[field];
  }
  if (readsQuery(route)) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(rest)) {
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const item of value) params.append(name, queryText(item));
      else params.append(name, queryText(value));
    }
    const query = params.toString();
    return { path: `${REST_BASE}${path}${query ? `?${query}` : ''}`, init: { method: route.method } };
  }
  return { path: `${REST_BASE}${path}`, init: { method: route.method, body: JSON.stringify(rest), headers: { 'content-type': 'application/json' } } };
}

export async function rawRest(app: TestApp, path: string, init: RequestInit = {}): Promise<RestResult> {
  const response = await fetch(`${app.baseUrl}${path}`, init);
  const text = await response.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: { code: 'NON_JSON', message: text } };
  }
  return { status: response.status, headers: response.headers, body, data: response.status < 300 ? body : undefined, text };
}

/** Calls a REST route with a procedure input, as `app.call` calls the procedure. */
export async function restCall<T = any>(
  app: TestApp,
  route: RestRoute,
  input: unknown,
  key: string | null,
  headers: Record<string, string> = {},
): Promise<RestResult<T>> {
  const { path, init } = restRequest(route, input);
  const all: Record<string, string> = { ...(init.headers as Record<string, string> | undefined), ...headers };
  if (key !== null) all.authorization = `Bearer ${key}`;
  return rawRest(app, path, { ...init, headers: all });
}
