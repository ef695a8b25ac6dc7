import type { IncomingMessage, ServerResponse } from 'node:http';
import { ZodError, z } from 'zod';
import {
  TRPCError,
  getErrorShape,
  getHTTPStatusCodeFromError,
  getTRPCErrorFromUnknown,
} from '@trpc/server/unstable-core-do-not-import';
import { AppError, type FieldIssue } from '../../lib/errors';
import { appRouter } from '../router';
import { createContextFactory } from '../context';
import type { Services } from '../services';
import { requestLogger } from '../request-log';
import { readBody } from '../trpc-node-handler';
import { OPENAPI_PATH, REST_BASE, type RestRoute, matchRoute, pathFields, readsQuery } from './routes';
import { buildOpenApiDocument } from './openapi';

interface ProcedureDef {
  _def: { type: 'query' | 'mutation' | 'subscription'; inputs: z.ZodType[] };
}
type CallableProcedure = ((call: {
  path: string;
  getRawInput: () => Promise<unknown>;
  ctx: unknown;
  type: 'query' | 'mutation';
  signal: AbortSignal | undefined;
  batchIndex: number;
}) => Promise<unknown>) &
  ProcedureDef;

/** The REST answer to a refusal: the tRPC code and message, and the fields at fault. */
export interface RestErrorBody {
  error: {
    code: string;
    message: string;
    /** Each names a field of the input (`path`) and where the field was sent (`in`). */
    issues?: { path: (string | number)[]; message: string; code?: string; in: 'path' | 'query' | 'body' }[];
    /** The application's own code where it says more than `code` (e.g. IDEMPOTENCY_CONFLICT). */
    appCode?: string;
    details?: unknown;
  };
}

type JsonKind = 'string' | 'number' | 'integer' | 'boolean' | 'null' | 'array' | 'object';

/** The JSON types a JSON Schema node admits (empty: anything). */
function kindsOf(schema: Record<string, unknown> | undefined): Set<JsonKind> {
  const kinds = new Set<JsonKind>();
  const visit = (node: unknown) => {
    if (!node || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (typeof n.type === 'string') kinds.add(n.type as JsonKind);
    if (Array.isArray(n.type)) for (const t of n.type) kinds.add(t as JsonKind);
    for (const values of [n.enum, n.const === undefined ? undefined : [n.const]]) {
      if (Array.isArray(values)) for (const v of values) kinds.add(v === null ? 'null' : Array.isArray(v) ? 'array' : (typeof v as JsonKind));
    }
    for (const list of [n.anyOf, n.oneOf, n.allOf]) if (Array.isArray(list)) list.forEach(visit);
  };
  visit(schema);
  return kinds;
}

const NUMBER = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;

/**
 * A query-string value as the JSON value the schema expects, where the text says it plainly
 * (`limit=10` is 10, `includeRevoked=true` is true); anything else stays text, for the
 * procedure's schema to refuse naming the field.
 */
function coerce(text: string, schema: Record<string, unknown> | undefined): unknown {
  const kinds = kindsOf(schema);
  if (kinds.size === 0 || kinds.has('string')) return text;
  if ((kinds.has('number') || kinds.has('integer')) && NUMBER.test(text)) return Number(text);
  if (kinds.has('boolean') && (text === 'true' || text === 'false')) return text === 'true';
  if (kinds.has('null') && text === 'null') return null;
  if (kinds.has('object') || kinds.has('array')) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

/** Sets `key` as an own property, `__proto__` included (a schema then refuses it as unknown). */
function put(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function badRequest(message: string, issues: FieldIssue[]): AppError {
  return new AppError('BAD_REQUEST', message, undefined, { issues });
}

function isJsonBody(type: string | undefined): boolean {
  if (type === undefined || type === '') return true;
  const mime = type.toLowerCase().split(';', 1)[0]!.trim();
  // `curl -d` labels a JSON body as a form; the tRPC door reads it as JSON too
  return mime === 'application/json' || mime === 'application/x-www-form-urlencoded';
}

interface CompiledRoute {
  route: RestRoute;
  procedure: CallableProcedure;
  type: 'query' | 'mutation';
  fields: string[];
  /** The input's JSON Schema properties, for reading query strings. */
  properties: Record<string, Record<string, unknown>>;
}

function compile(route: RestRoute): CompiledRoute {
  const procedures = appRouter._def.procedures as unknown as Record<string, CallableProcedure>;
  const procedure = procedures[route.procedure];
  if (!procedure) throw new Error(`REST route ${route.method} ${route.path}: no procedure ${route.procedure}`);
  const type = procedure._def.type;
  if (type === 'subscription') throw new Error(`REST route ${route.method} ${route.path}: subscriptions are not served`);
  const input = procedure._def.inputs[0];
  const json = input ? (z.toJSONSchema(input, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, Record<string, unknown>> }) : {};
  return { route, procedure, type, fields: pathFields(route), properties: json.properties ?? {} };
}

/**
 * The REST face under /api/v1: each route calls its tRPC procedure exactly as the tRPC door
 * does (the same context, guard, access rule, audit, input schema, output schema and error
 * mapping), with the input gathered from the path, the query string or a JSON body, read only
 * once the caller is authenticated (so a caller without a key gets a 401 whatever it sent).
 * Answers are the procedure's data as the body; refusals are `{ error: { code, message,
 * issues } }` with tRPC's HTTP status, and the same rate-limit headers.
 */
export function createRestHandler(services: Services) {
  const createContext = createContextFactory(services);
  const config = appRouter._def._config;
  const compiled = new Map<RestRoute, CompiledRoute>();
  const compiledOf = (route: RestRoute) => {
    let c = compiled.get(route);
    if (!c) compiled.set(route, (c = compile(route)));
    return c;
  };
  let openapi: string | undefined;

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    if (res.headersSent) {
      res.end();
      return;
    }
    res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  function rawInputOf(req: IncomingMessage, c: CompiledRoute, params: Record<string, string>, query: string | null): () => Promise<unknown> {
    return async () => {
      const input: Record<string, unknown> = {};
      const fromPath = new Map<string, string>();
      for (const field of c.fields) {
        try {
          fromPath.set(field, decodeURIComponent(params[field]!));
        } catch {
          throw badRequest(`${field}: malformed percent-encoding in the path`, [{ path: [field], message: 'malformed percent-encoding in the path', code: 'invalid_format' }]);
        }
      }
      if (readsQuery(c.route)) {
        const search = new URLSearchParams(query ?? '');
        for (const name of new Set(search.keys())) {
          const values = search.getAll(name);
          const schema = c.properties[name];
          const isArray = kindsOf(schema).has('array');
          const items = (schema?.items ?? undefined) as Record<string, unknown> | undefined;
          const value =
            values.length > 1 ? (isArray ? values.map((v) => coerce(v, items)) : values) : isArray && !values[0]!.startsWith('[') ? [coerce(values[0]!, items)] : coerce(values[0]!, schema);
          put(input, name, value);
        }
      } else {
        if (query !== null && query !== '') {
          throw badRequest(`${c.route.method} ${REST_BASE}${c.route.path} takes its input as a JSON body, not a query string`, [
            { path: [], message: 'send the input as a JSON body', code: 'unrecognized_keys' },
          ]);
        }
        if (!isJsonBody(req.headers['content-type'])) {
          throw new TRPCError({ code: 'UNSUPPORTED_MEDIA_TYPE', message: `send the body as application/json, not ${req.headers['content-type']}` });
        }
        const text = await readBody(req, services.env.MAX_BODY_BYTES).catch((cause: unknown) => {
          if (cause instanceof TRPCError && cause.code === 'PAYLOAD_TOO_LARGE') {
            throw new AppError('PAYLOAD_TOO_LARGE', `the body must be at most ${services.env.MAX_BODY_BYTES} bytes`);
          }
          throw cause;
        });
        let body: unknown = {};
        if (text.trim() !== '') {
          try {
            body = JSON.parse(text);
          } catch (cause) {
            throw badRequest(`the body is not JSON: ${(cause as Error).message}`, [{ path: [], message: 'not JSON', code: 'invalid_type' }]);
          }
        }
        if (body === null || typeof body !== 'object' || Array.isArray(body)) {
          throw badRequest('the body must be a JSON object', [{ path: [], message: 'expected a JSON object', code: 'invalid_type' }]);
        }
        for (const key of Object.keys(body)) put(input, key, (body as Record<string, unknown>)[key]);
      }
      for (const [field, value] of fromPath) {
        if (Object.hasOwn(input, field) && input[field] !== value) {
          throw badRequest(`${field}: given in the path, it may not differ in the ${readsQuery(c.route) ? 'query' : 'body'}`, [
            { path: [field], message: 'differs from the path', code: 'custom' },
          ]);
        }
        put(input, field, value);
      }
      return input;
    };
  }

  function errorBody(c: CompiledRoute, shape: { message: string; data: Record<string, unknown> }): RestErrorBody {
    const data = shape.data;
    const issues = (data.issues as { path: PropertyKey[]; message: string; code?: string }[] | undefined)?.map((issue) => {
      const path = issue.path.map((p) => (typeof p === 'number' ? p : String(p)));
      const field = path[0];
      const where = typeof field === 'string' && c.fields.includes(field) ? 'path' : readsQuery(c.route) ? 'query' : 'body';
      return { path, message: issue.message, ...(issue.code ? { code: issue.code } : {}), in: where } as const;
    });
    return {
      error: {
        code: String(data.code),
        message: shape.message,
        ...(issues?.length ? { issues } : {}),
        ...(typeof data.appCode === 'string' ? { appCode: data.appCode } : {}),
        ...(data.details !== undefined ? { details: data.details } : {}),
      },
    };
  }

  async function call(req: IncomingMessage, res: ServerResponse, c: CompiledRoute, params: Record<string, string>, query: string | null): Promise<void> {
    const aborter = new AbortController();
    const onClose = () => {
      if (!res.writableEnded) aborter.abort();
    };
    res.once('close', onClose);
    const read = rawInputOf(req, c, params, query);
    let input: { value: unknown } | undefined;
    let reading: Promise<unknown> | undefined;
    const getRawInput = () =>
      (reading ??= read().then((value) => {
        input = { value };
        return value;
      }));
    const path = c.route.procedure;
    const ctx = createContext({ req, res });
    let data: unknown;
    let error: TRPCError | undefined;
    try {
      data = await c.procedure({ path, getRawInput, ctx, type: c.type, signal: aborter.signal, batchIndex: 0 });
    } catch (cause) {
      error = getTRPCErrorFromUnknown(cause);
    }
    res.off('close', onClose);
    if (!error) {
      // A procedure may have set its own status on ctx.res; keep it.
      send(res, res.statusCode === 200 ? (c.route.status ?? 200) : res.statusCode, data ?? null);
      return;
    }
    // Events refused by input validation never reach the domain; counted as the tRPC door counts them.
    if (path === 'usage.trackEvent' && error.code === 'BAD_REQUEST' && error.cause instanceof ZodError) {
      services.metrics.eventsRejected.inc({ reason: 'INVALID_EVENT' });
    }
    if (error.code === 'INTERNAL_SERVER_ERROR') ctx.log.error({ err: error.cause ?? error, path, route: `${c.route.method} ${REST_BASE}${c.route.path}` }, 'request failed');
    const shape = getErrorShape({ config, ctx, error, input: input?.value, path, type: c.type }) as unknown as { message: string; data: Record<string, unknown> };
    send(res, res.statusCode === 200 ? getHTTPStatusCodeFromError(error) : res.statusCode, errorBody(c, shape));
  }

  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    const mark = url.indexOf('?');
    const pathname = mark === -1 ? url : url.slice(0, mark);
    const query = mark === -1 ? null : url.slice(mark + 1);
    if (pathname === OPENAPI_PATH) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, { error: { code: 'METHOD_NOT_SUPPORTED', message: `${req.method} ${pathname}: use GET` } }, { allow: 'GET, HEAD' });
        return;
      }
      openapi ??= JSON.stringify(buildOpenApiDocument());
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(openapi), 'cache-control': 'public, max-age=300' });
      res.end(req.method === 'HEAD' ? undefined : openapi);
      return;
    }
    const rest = pathname.slice(REST_BASE.length);
    const segments = rest.replace(/\/$/, '').split('/').slice(1);
    const match = rest.startsWith('/') ? matchRoute(req.method ?? 'GET', segments) : { route: null, allowed: [] };
    if (!match.route) {
      if (match.allowed.length) {
        send(res, 405, { error: { code: 'METHOD_NOT_SUPPORTED', message: `${req.method} is not served at ${pathname}; use ${match.allowed.join(', ')}` } }, { allow: match.allowed.join(', ') });
      } else {
        send(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${req.method} ${pathname} (see ${OPENAPI_PATH})` } });
      }
      return;
    }
    const c = compiledOf(match.route);
    call(req, res, c, match.params, query).catch((cause: unknown) => {
      // Only a bug in the lines above lands here.
      requestLogger(services.logger, req).error({ err: cause, route: `${c.route.method} ${c.route.path}` }, 'REST request failed');
      send(res, 500, { error: { code: 'INTERNAL_SERVER_ERROR', message: 'internal error: the server logged it' } });
    });
  };
}
