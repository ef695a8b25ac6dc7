import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AnyTRPCRouter } from '@trpc/server';
import { type CreateHTTPHandlerOptions, createHTTPHandler } from '@trpc/server/adapters/standalone';
import type { TRPCRequestInfo } from '@trpc/server/http';
import {
  TRPCError,
  defaultTransformer,
  getErrorShape,
  getHTTPStatusCode,
  getTRPCErrorFromUnknown,
  isAsyncIterable,
  isObject,
  isPromise,
  transformTRPCResponse,
} from '@trpc/server/unstable-core-do-not-import';
import { rememberedJson } from '../lib/json-text';

type HandlerOptions<TRouter extends AnyTRPCRouter> = CreateHTTPHandlerOptions<TRouter> & { basePath: string };

/** Names a single procedure in a URL path: nothing to decode, no batch, no nesting separator. */
const PLAIN_PATH = /^[A-Za-z0-9_$]+(?:\.[A-Za-z0-9_$]+)*$/;

function isJsonContentType(value: string | undefined): boolean {
  return value !== undefined && value.toLowerCase().split(';', 1)[0]!.trim() === 'application/json';
}

/** The same test tRPC applies before refusing a non-streaming response (resolveResponse). */
function isDataStream(value: unknown): boolean {
  if (!isObject(value)) return false;
  if (isAsyncIterable(value)) return true;
  return Object.values(value).some(isPromise) || Object.values(value).some(isAsyncIterable);
}

/**
 * The request body as text, refused with PAYLOAD_TOO_LARGE past `maxBodySize` bytes, as tRPC's
 * own body reader does. A leading byte-order mark is dropped, as `Request.text()` drops it.
 */
export function readBody(req: IncomingMessage, maxBodySize: number | null): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const detach = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (maxBodySize === null || size <= maxBodySize) {
        chunks.push(chunk);
        return;
      }
      detach();
      reject(new TRPCError({ code: 'PAYLOAD_TOO_LARGE' }));
    };
    const onEnd = () => {
      detach();
      const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, size).toString('utf8');
      resolve(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    };
    const onError = (error: Error) => {
      detach();
      reject(error);
    };
    const onClose = () => {
      if (req.complete) return;
      detach();
      reject(new TRPCError({ code: 'CLIENT_CLOSED_REQUEST', message: 'the client closed the request' }));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * tRPC over node:http with a direct path for the common calls: a POST of plain JSON to one
 * mutation (every usage event arrives this way) and a GET of one query (analytics). tRPC's standalone adapter turns each request
 * into a fetch Request/Response pair, with its headers, body streams and four abort signals;
 * on a 2-core box that was a fifth of the API's CPU at high request rates. The direct path
 * calls the same procedure with the same context, reads the body lazily with the same size
 * limit, and answers with tRPC's own error shape, status mapping and response serializer,
 * so clients see the same answers. Everything else (batches, other content types,
 * streaming, unknown paths, wrong methods) goes to tRPC's adapter unchanged.
 */
export function createTrpcNodeHandler<TRouter extends AnyTRPCRouter>(opts: HandlerOptions<TRouter>) {
  const viaAdapter = createHTTPHandler(opts);
  const config = opts.router._def._config;
  const base = `/${opts.basePath.replace(/^\/+|\/+$/g, '')}/`;
  const maxBodySize = opts.maxBodySize ?? null;

  type Procedure = (call: {
    path: string;
    getRawInput: () => Promise<unknown>;
    ctx: unknown;
    type: 'query' | 'mutation';
    signal: AbortSignal | undefined;
    batchIndex: number;
  }) => Promise<unknown>;

  /**
   * The call this request makes directly, or undefined when tRPC's adapter should answer: a
   * POST of JSON to a mutation, or a GET of a query whose only parameter is `input`.
   */
  function directCall(req: IncomingMessage): { path: string; procedure: Procedure; type: 'query' | 'mutation'; query: string | null } | undefined {
    const url = req.url;
    if (!url || !url.startsWith(base)) return undefined;
    const mark = url.indexOf('?');
    const path = url.slice(base.length, mark === -1 ? undefined : mark);
    let type: 'query' | 'mutation';
    let query: string | null = null;
    if (req.method === 'POST') {
      if (mark !== -1 || !isJsonContentType(req.headers['content-type'])) return undefined;
      type = 'mutation';
    } else if (req.method === 'GET') {
      const contentType = req.headers['content-type'];
      if (contentType !== undefined && !isJsonContentType(contentType)) return undefined;
      if (mark !== -1) {
        const params = new URLSearchParams(url.slice(mark + 1));
        for (const name of params.keys()) if (name !== 'input') return undefined; // batch, connectionParams: the adapter
        if (params.getAll('input').length > 1) return undefined;
        query = params.get('input');
      }
      type = 'query';
    } else return undefined;
    if (!PLAIN_PATH.test(path)) return undefined;
    // Streaming answers (jsonl) are tRPC's business.
    if (req.headers['trpc-accept'] !== undefined || req.headers.accept?.includes('application/jsonl')) return undefined;
    const procedures = opts.router._def.procedures as Record<string, unknown>;
    if (!Object.hasOwn(procedures, path)) return undefined; // lazy routers and unknown paths: the adapter
    const procedure = procedures[path] as Procedure | undefined;
    if (!procedure || (procedure as unknown as { _def: { type: string } })._def.type !== type) return undefined;
    return { path, procedure, type, query };
  }

  async function answer(
    req: IncomingMessage,
    res: ServerResponse,
    call: NonNullable<ReturnType<typeof directCall>>,
  ): Promise<void> {
    const { path, procedure, type } = call;
    // The signal aborts when the client leaves before its answer, as the adapter's does.
    const aborter = new AbortController();
    const onClose = () => {
      if (!res.writableEnded) aborter.abort();
    };
    res.once('close', onClose);

    let input: { value: unknown } | undefined;
    let reading: Promise<unknown> | undefined;
    // Read once, when the input parser asks (after authentication, as with the adapter); an
    // unreadable body is a BAD_REQUEST carrying the parser's message, as tRPC makes it.
    const getRawInput = () =>
      (reading ??= (type === 'query' ? Promise.resolve(call.query ?? '') : readBody(req, maxBodySize)).then(
        (text) => {
          const parsed: unknown = text ? JSON.parse(text) : undefined;
          const value = parsed === undefined ? undefined : config.transformer.input.deserialize(parsed);
          input = { value };
          return value;
        },
      ).catch((cause: unknown) => {
        if (cause instanceof TRPCError) throw cause;
        throw new TRPCError({ code: 'BAD_REQUEST', message: cause instanceof Error ? cause.message : 'Invalid input', cause });
      }));

    const info: TRPCRequestInfo = {
      accept: null,
      type,
      isBatchCall: false,
      calls: [{ path, getRawInput, result: () => input?.value, procedure: procedure as never, batchIndex: 0 }],
      connectionParams: null,
      signal: aborter.signal,
      url: null,
    };
    let ctx: unknown;
    let body: unknown;
    let error: TRPCError | undefined;
    try {
      ctx = await opts.createContext?.({ req, res, info });
    } catch (cause) {
      error = getTRPCErrorFromUnknown(cause);
    }
    if (!error) {
      try {
        const data = await procedure({ path, getRawInput, ctx, type, signal: aborter.signal, batchIndex: 0 });
        if (isDataStream(data)) {
          throw new TRPCError({
            code: 'UNSUPPORTED_MEDIA_TYPE',
            message: 'Cannot use stream-like response in non-streaming request - use httpBatchStreamLink',
          });
        }
        body = { result: { data } };
      } catch (cause) {
        error = getTRPCErrorFromUnknown(cause);
      }
    }
    if (error) {
      opts.onError?.({ error, path, input: input?.value, ctx, type, req });
      body = { error: getErrorShape({ config, ctx, error, input: input?.value, path, type }) };
    }
    const status = error ? getHTTPStatusCode([body as never], [error]) : 200;
    // With no transformer (plain JSON) tRPC's response transform only copies the objects; an
    // answer already serialized once (a cached analytics answer) is not serialized again.
    const known = !error && config.transformer === defaultTransformer ? rememberedJson((body as { result: { data: unknown } }).result.data) : undefined;
    const text =
      known !== undefined ? `{"result":{"data":${known}}}` : JSON.stringify(config.transformer === defaultTransformer ? body : transformTRPCResponse(config, body as never));
    res.off('close', onClose);
    // A procedure may have set its own status (and headers) on ctx.res; keep them.
    if (res.statusCode === 200) res.statusCode = status;
    res.setHeader('vary', 'trpc-accept, accept');
    res.setHeader('content-type', 'application/json');
    res.end(text);
  }

  return (req: IncomingMessage, res: ServerResponse): void => {
    const direct = directCall(req);
    if (!direct) {
      viaAdapter(req, res);
      return;
    }
    answer(req, res, direct).catch((cause: unknown) => {
      // Only a bug in the lines above lands here: answer as tRPC's adapter does.
      const error = getTRPCErrorFromUnknown(cause);
      opts.onError?.({ error, path: direct.path, input: undefined, ctx: undefined, type: 'unknown', req });
      if (res.headersSent) {
        res.end();
        return;
      }
      res.statusCode = 500;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({ error: { code: -32603, message: 'Internal server error', data: { code: 'INTERNAL_SERVER_ERROR', httpStatus: 500 } } }),
      );
    });
  };
}
