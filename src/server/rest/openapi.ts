import { z } from 'zod';
import { appRouter } from '../router';
import type { Meta } from '../trpc';
import { REST_BASE, REST_ROUTES, type RestRoute, pathFields, readsQuery } from './routes';

type JsonSchema = Record<string, unknown>;

interface ProcedureDef {
  _def: { type: string; meta?: Meta; inputs: z.ZodType[]; output?: z.ZodType };
}

/**
 * Output dates are `z.date()` piped into an ISO string (routers/schemas.ts isoDate): a JSON
 * Schema cannot say what a transform makes, so say it here.
 */
function isoDateOverride(ctx: { zodSchema: unknown; jsonSchema: JsonSchema }): void {
  const def = (ctx.zodSchema as { _zod: { def: { type: string; in?: { _zod: { def: { type: string } } } } } })._zod.def;
  if (def.type === 'pipe' && def.in?._zod.def.type === 'date') {
    for (const key of Object.keys(ctx.jsonSchema)) delete ctx.jsonSchema[key];
    Object.assign(ctx.jsonSchema, { type: 'string', format: 'date-time' });
  }
}

function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const json = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12', override: isoDateOverride }) as JsonSchema;
  delete json.$schema;
  return json;
}

/** The schema without the fields the path carries. */
function withoutFields(schema: JsonSchema, fields: string[]): JsonSchema {
  if (!fields.length || !schema.properties) return schema;
  const properties = { ...(schema.properties as Record<string, JsonSchema>) };
  for (const field of fields) delete properties[field];
  const required = ((schema.required as string[] | undefined) ?? []).filter((name) => !fields.includes(name));
  const copy: JsonSchema = { ...schema, properties };
  if (required.length) copy.required = required;
  else delete copy.required;
  return copy;
}

const errorSchema: JsonSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', description: "tRPC's error code, e.g. BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, TOO_MANY_REQUESTS" },
        message: { type: 'string' },
        issues: {
          type: 'array',
          description: 'The fields at fault (400s).',
          items: {
            type: 'object',
            required: ['path', 'message', 'in'],
            properties: {
              path: { type: 'array', items: { type: ['string', 'integer'] } },
              message: { type: 'string' },
              code: { type: 'string' },
              in: { type: 'string', enum: ['path', 'query', 'body'] },
            },
          },
        },
        appCode: { type: 'string', description: "The application's own code where it says more (IDEMPOTENCY_CONFLICT, LICENSE_INACTIVE, ...)" },
        details: { description: 'For quota refusals: the limit, what is used and when it resets.' },
      },
    },
  },
};

const limitHeaders = Object.fromEntries(
  [
    ['RateLimit-Limit', 'The limit of the hard quota (or the key rate limit) with the least room left'],
    ['RateLimit-Remaining', 'What is left of it'],
    ['RateLimit-Reset', 'Seconds until it resets'],
    ['X-RateLimit-Limit', 'As RateLimit-Limit'],
    ['X-RateLimit-Remaining', 'As RateLimit-Remaining'],
    ['X-RateLimit-Reset', 'The reset as a unix timestamp (seconds)'],
  ].map(([name, description]) => [name, { description, schema: { type: 'string' } }]),
);

const errorResponse = (description: string, headers?: JsonSchema) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

function operationId(procedure: string): string {
  return procedure.replace(/\.([a-z])/g, (_, c: string) => c.toUpperCase());
}

function operationOf(route: RestRoute, def: ProcedureDef['_def']) {
  const meta = def.meta!;
  // What the route documents, else the procedure's output parser, else its meta's answer (see AnswerMeta).
  const answer = route.documentedAnswer ?? def.output ?? ('answer' in meta ? meta.answer : undefined);
  const input = def.inputs[0];
  const fields = pathFields(route);
  const inputSchema = input ? jsonSchemaOf(input, 'input') : { type: 'object', properties: {} };
  const properties = (inputSchema.properties ?? {}) as Record<string, JsonSchema>;
  const required = (inputSchema.required ?? []) as string[];
  const parameters: JsonSchema[] = fields.map((name) => ({ name, in: 'path', required: true, schema: properties[name] ?? { type: 'string' } }));
  if (readsQuery(route)) {
    for (const [name, schema] of Object.entries(properties)) {
      if (fields.includes(name)) continue;
      const structured = JSON.stringify(schema).includes('"object"');
      parameters.push({
        name,
        in: 'query',
        required: required.includes(name),
        ...(structured ? { content: { 'application/json': { schema } } } : { schema, ...(schema.type === 'array' ? { style: 'form', explode: true } : {}) }),
      });
    }
  }
  const bodySchema = !readsQuery(route) ? withoutFields(route.documentedBody ? jsonSchemaOf(route.documentedBody, 'input') : inputSchema, fields) : undefined;
  const hasBody = bodySchema !== undefined && Object.keys((bodySchema.properties ?? {}) as object).length > 0;
  const roles = ['admin', ...(meta.scope === 'platform' ? [] : meta.roles)];
  const status = String(route.status ?? 200);
  const quota = route.procedure === 'usage.trackEvent' || route.procedure === 'usage.trackEvents';
  return {
    operationId: operationId(route.procedure),
    summary: route.summary,
    description: `Calls the tRPC procedure \`${route.procedure}\` (same input, answer and errors). Roles: ${roles.join(', ')}.${meta.scope === 'tenant' ? ' Admin keys name the tenant with X-Tally-Tenant.' : ''}`,
    tags: [route.tag],
    'x-tally-procedure': route.procedure,
    'x-tally-roles': roles,
    parameters: [
      ...parameters,
      { name: 'X-Tally-Tenant', in: 'header', required: false, description: 'Admin keys only: the tenant the call works in.', schema: { type: 'string', format: 'uuid' } },
    ],
    ...(hasBody ? { requestBody: { required: (bodySchema.required as string[] | undefined)?.length ? true : false, content: { 'application/json': { schema: bodySchema } } } } : {}),
    responses: {
      [status]: {
        description: 'The procedure’s answer',
        ...(quota ? { headers: limitHeaders } : {}),
        content: { 'application/json': { schema: answer ? jsonSchemaOf(answer, 'output') : {} } },
      },
      '400': errorResponse('Invalid input: `issues` names each field'),
      '401': errorResponse('Missing, malformed, unknown or revoked API key'),
      '403': errorResponse("The key's role may not call this"),
      '404': errorResponse('Not found (or another tenant’s)'),
      ...(hasBody ? { '413': errorResponse('Body larger than the limit (MAX_BODY_BYTES)'), '415': errorResponse('Body is not JSON') } : {}),
      '429': errorResponse('Over a hard quota, the key rate limit or the authentication throttle', { ...limitHeaders, 'Retry-After': { description: 'Seconds to wait', schema: { type: 'string' } } }),
    },
  };
}

/** The OpenAPI 3.1 document of the REST face, from the procedures' own zod schemas and meta. */
export function buildOpenApiDocument(version = '1.0.0') {
  const procedures = appRouter._def.procedures as unknown as Record<string, ProcedureDef>;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of REST_ROUTES) {
    const procedure = procedures[route.procedure];
    if (!procedure) throw new Error(`REST route ${route.method} ${route.path}: no procedure ${route.procedure}`);
    (paths[route.path] ??= {})[route.method.toLowerCase()] = operationOf(route, procedure._def);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Tally REST API',
      version,
      description:
        'Usage metering, quotas and usage-based billing. Every operation calls the tRPC procedure it names (`x-tally-procedure`), with the same schemas, roles, errors and rate-limit headers. Authenticate with `Authorization: Bearer <api key>`. Quantities go out as exact decimal strings, money as integer cents, times as ISO 8601.',
    },
    servers: [{ url: REST_BASE }],
    security: [{ bearerAuth: [] }],
    tags: [...new Set(REST_ROUTES.map((r) => r.tag))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'A Tally API key (tk_live_… / tk_test_…)' } },
      schemas: { Error: errorSchema },
    },
  };
}
