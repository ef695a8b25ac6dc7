import http from 'node:http';
import type { Duplex } from 'node:stream';
import { ZodError } from 'zod';
import { appRouter } from './router';
import { createContextFactory } from './context';
import { createTrpcNodeHandler } from './trpc-node-handler';
import type { Services } from './services';
import { requestLogger } from './request-log';
import { ADMIN_QUEUES_PATH, createAdminQueuesHandler } from './admin-queues';
import { QUEUES } from '../domain/jobs/catalog';
import { EXPORT_PATH, createExportHandler } from './export-routes';
import { TRPC_BASE, createRouteLabeler } from './route-labels';
import { createMetricsGate } from './metrics-access';
import { clientAddress } from './client-address';
import { CORS_PATH_PREFIX, VaryMergingResponse, createCors } from './cors';
import { STRIPE_WEBHOOK_PATH, createStripeWebhookHandler } from './stripe-webhook';
import { createRestHandler } from './rest/handler';
import { REST_BASE } from './rest/routes';
import { createDocsHandler, isDocsPath } from './rest/docs';
import { createConsoleHandler, isConsolePath } from './console/static';
import { consoleDistDir } from './console/bundle';
import { lingerAfterEnd, lingeringArrival } from './linger';

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export async function healthOf(services: Services) {
  const [database, redis] = await Promise.all([
    withTimeout(services.db.pool.query('SELECT 1'), 2000).then(
      () => 'up' as const,
      () => 'down' as const,
    ),
    withTimeout(services.redis.ping(), 2000).then(
      () => 'up' as const,
      () => 'down' as const,
    ),
  ]);
  return { status: database === 'up' && redis === 'up' ? ('ok' as const) : ('degraded' as const), database, redis };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Queue depth is read from Redis when /metrics is scraped; a Redis outage leaves the last values. */
async function refreshQueueDepth(services: Services): Promise<void> {
  await Promise.all(
    QUEUES.map(async (name) => {
      const counts = await withTimeout(
        services.queues.queues[name].getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed'),
        1000,
      ).catch(() => null);
      for (const [state, count] of Object.entries(counts ?? {})) services.metrics.queueDepth.set({ queue: name, state }, count);
    }),
  );
}

/** `consoleUnavailable`: why the web console cannot be served (its bundle missing and not buildable), said at /dashboard. */
export function createHttpServer(services: Services, options: { consoleUnavailable?: string } = {}): http.Server {
  const trpc = createTrpcNodeHandler({
    router: appRouter,
    basePath: TRPC_BASE,
    createContext: createContextFactory(services),
    maxBodySize: services.env.MAX_BODY_BYTES,
    onError({ error, path, ctx, req }) {
      // Events refused by input validation never reach the domain; count them here.
      if (path === 'usage.trackEvent' && error.code === 'BAD_REQUEST' && error.cause instanceof ZodError) {
        services.metrics.eventsRejected.inc({ reason: 'INVALID_EVENT' });
      }
      if (error.code === 'INTERNAL_SERVER_ERROR') (ctx?.log ?? requestLogger(services.logger, req)).error({ err: error.cause ?? error, path }, 'request failed');
    },
  });

  const adminQueues = createAdminQueuesHandler(services);
  const exportHandler = createExportHandler(services);
  const routeLabel = createRouteLabeler(Object.keys(appRouter._def.procedures));
  const metricsGate = createMetricsGate(services.env.METRICS_TOKEN);
  const cors = createCors(services.env.CORS_ALLOWED_ORIGINS);
  const stripeWebhook = createStripeWebhookHandler(services);
  const rest = createRestHandler(services);
  const docs = createDocsHandler();
  const webConsole = createConsoleHandler(consoleDistDir(services.env.CONSOLE_DIST_DIR), () => options.consoleUnavailable ?? null);

  const server = http.createServer({ ServerResponse: VaryMergingResponse }, (req, res) => {
    const url = req.url ?? '/';
    const pathname = url.split('?')[0] ?? '/';
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const procedure = routeLabel(pathname, req.method);
      services.metrics.httpRequests.inc({ procedure, status: String(res.statusCode) });
      services.metrics.httpDuration.observe({ procedure }, Number(process.hrtime.bigint() - started) / 1e9);
    });

    if (pathname.startsWith(CORS_PATH_PREFIX) && cors(req, res) === 'answered') return;
    if (pathname === '/health' && req.method === 'GET') {
      void healthOf(services).then((h) => sendJson(res, h.status === 'ok' ? 200 : 503, h));
      return;
    }
    if (pathname === '/metrics' && req.method === 'GET') {
      const refusal = metricsGate(req, clientAddress(req, services.env.TRUST_PROXY));
      if (refusal) {
        const code = refusal.status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN';
        sendJson(res, refusal.status, { error: { message: refusal.message, code } }, refusal.headers);
        return;
      }
      void refreshQueueDepth(services)
        .then(() => services.metrics.registry.metrics())
        .then(
          (text) => {
            res.writeHead(200, { 'content-type': services.metrics.registry.contentType });
            res.end(text);
          },
          (err: unknown) => {
            // a collector that throws must not become an unhandled rejection
            requestLogger(services.logger, req).error({ err }, 'metrics failed');
            if (!res.headersSent) sendJson(res, 503, { error: { message: 'metrics unavailable, retry later', code: 'SERVICE_UNAVAILABLE' } }, { 'retry-after': '5' });
          },
        );
      return;
    }
    if (pathname === ADMIN_QUEUES_PATH || pathname.startsWith(`${ADMIN_QUEUES_PATH}/`)) {
      adminQueues(req, res).catch((err: unknown) => {
        requestLogger(services.logger, req).error({ err }, 'queue dashboard failed');
        if (!res.headersSent) sendJson(res, 503, { error: { message: 'queue dashboard unavailable', code: 'SERVICE_UNAVAILABLE' } });
      });
      return;
    }
    if (pathname.startsWith(EXPORT_PATH)) {
      exportHandler(req, res).catch((err: unknown) => {
        requestLogger(services.logger, req).error({ err }, 'export failed');
        if (!res.headersSent) sendJson(res, 503, { error: { message: 'export unavailable, retry later', code: 'SERVICE_UNAVAILABLE' } }, { 'retry-after': '5' });
      });
      return;
    }
    if (pathname.startsWith(STRIPE_WEBHOOK_PATH)) {
      stripeWebhook(req, res, pathname).catch((err: unknown) => {
        requestLogger(services.logger, req).error({ err }, 'Stripe webhook failed');
        // Stripe retries a 503; the event was not recorded, so the retry is handled in full.
        if (!res.headersSent) sendJson(res, 503, { error: { message: 'webhook not processed, retry later', code: 'SERVICE_UNAVAILABLE' } }, { 'retry-after': '5' });
      });
      return;
    }
    if (pathname.startsWith(TRPC_BASE)) {
      // The API speaks plain JSON only; `curl -d` labels its body as a form, so read it as JSON.
      const type = req.headers['content-type'];
      if (req.method === 'POST' && (!type || type.startsWith('application/x-www-form-urlencoded'))) {
        req.headers['content-type'] = 'application/json';
      }
      trpc(req, res);
      return;
    }
    if (pathname === REST_BASE || pathname.startsWith(`${REST_BASE}/`)) {
      rest(req, res);
      return;
    }
    if (isDocsPath(pathname)) {
      docs(req, res).catch((err: unknown) => {
        requestLogger(services.logger, req).error({ err }, 'API reference failed');
        if (!res.headersSent) sendJson(res, 503, { error: { message: 'API reference unavailable', code: 'SERVICE_UNAVAILABLE' } });
      });
      return;
    }
    if (isConsolePath(pathname)) {
      webConsole(req, res, pathname);
      return;
    }
    sendJson(res, 404, { error: { message: `no route for ${req.method} ${pathname}`, code: 'NOT_FOUND' } });
  });
  server.on('clientError', answerUnparsable);
  return server;
}

/**
 * node:http refuses a request it cannot parse (a request line or headers past
 * --max-http-header-size, as a GET of a large query input makes them, or bytes that are not
 * HTTP) with an empty 431 or 400 unless a listener answers; say why, as every refusal does.
 */
function answerUnparsable(err: NodeJS.ErrnoException & { bytesParsed?: number }, socket: Duplex): void {
  // a later piece of a request already answered (node:http reports each as another parse error)
  if (lingeringArrival(socket)) return;
  // A response already begun, or owed to an earlier request on this connection (pipelining: the
  // error is in a later request, whose parse began after the earlier one's completed), would
  // make ours read as the wrong answer: say nothing then, as node:http itself does. An error in
  // the body of the request being answered (a bad chunk, a timeout) is answered.
  const { _httpMessage: inFlight, parser } = socket as Duplex & { _httpMessage?: http.ServerResponse | null; parser?: { incoming?: http.IncomingMessage | null } | null };
  const incoming = parser?.incoming;
  const ownRequest = inFlight && incoming && inFlight.req === incoming && !incoming.complete;
  if (!socket.writable || err.code === 'ECONNRESET' || (inFlight && (inFlight.headersSent || !ownRequest))) {
    socket.destroy();
    return;
  }
  const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
  const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  const status = tooLarge ? 431 : timedOut ? 408 : 400;
  const error = tooLarge
    ? {
        message: `request line and headers must be at most ${http.maxHeaderSize} bytes together (send a large input as the body of a POST)`,
        code: 'REQUEST_HEADER_FIELDS_TOO_LARGE',
      }
    : timedOut
      ? { message: 'request not received in time', code: 'REQUEST_TIMEOUT' }
      : { message: `malformed HTTP request (${err.code ?? 'parse error'})`, code: 'BAD_REQUEST' };
  const text = JSON.stringify({ error });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
  lingerAfterEnd(socket);
}
