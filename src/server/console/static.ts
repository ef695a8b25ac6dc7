import { readdirSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';

/** Where the web console is served; `/` redirects here. The bundle is built with this base (web/vite.config.ts). */
export const CONSOLE_PATH = '/dashboard';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * Only this server's files, and no inline script or style element: React and uPlot set styles
 * through the CSSOM, which style-src does not govern. The API is called on the same origin.
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

const SECURITY_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
};

interface Asset {
  body: Buffer;
  type: string;
}

export function isConsolePath(pathname: string): boolean {
  return pathname === '/' || pathname === CONSOLE_PATH || pathname.startsWith(`${CONSOLE_PATH}/`);
}

function sendError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  const text = JSON.stringify({ error: { message, code } });
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/**
 * The console's static files. Which files exist is read from the bundle folder into a table
 * keyed by URL path, and a request is answered only from that table: a path that is not one of
 * the bundle's own files (`..`, encoded separators, absolute paths, anything) cannot name a file
 * on disk. The table is read again when index.html changes (a rebuild). No API data is served
 * here: the page asks the API for everything with the key the user pastes.
 */
export function createConsoleHandler(distDir: string, unavailableReason: () => string | null = () => null) {
  let table = new Map<string, Asset>();
  let indexStamp = -1;

  const load = () => {
    let stamp: number;
    try {
      stamp = statSync(path.join(distDir, 'index.html')).mtimeMs;
    } catch {
      table = new Map();
      indexStamp = -1;
      return;
    }
    if (stamp === indexStamp) return;
    const next = new Map<string, Asset>();
    const visit = (dir: string, prefix: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) visit(full, `${prefix}/${entry.name}`);
        else if (entry.isFile()) next.set(`${prefix}/${entry.name}`, { body: readFileSync(full), type: TYPES[path.extname(entry.name)] ?? 'application/octet-stream' });
      }
    };
    visit(distDir, CONSOLE_PATH);
    table = next;
    indexStamp = stamp;
  };

  return (req: IncomingMessage, res: ServerResponse, pathname: string): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(res, 405, 'METHOD_NOT_SUPPORTED', `${req.method} ${pathname}: use GET`, { allow: 'GET, HEAD' });
      return;
    }
    if (pathname === '/') {
      res.writeHead(302, { location: `${CONSOLE_PATH}/`, 'content-length': 0, 'cache-control': 'no-cache' });
      res.end();
      return;
    }
    load();
    const index = table.get(`${CONSOLE_PATH}/index.html`);
    if (!index) {
      const reason = unavailableReason() ?? 'the web console has not been built: run npm start (it builds web/ when Vite is installed)';
      sendError(res, 503, 'SERVICE_UNAVAILABLE', reason);
      return;
    }
    const file = table.get(pathname);
    // Hashed file names change with their content: a year, immutable. Anything under assets/
    // that is not in the bundle is a 404, not the page (a stale chunk must fail loudly).
    if (pathname.startsWith(`${CONSOLE_PATH}/assets/`) && !file) {
      sendError(res, 404, 'NOT_FOUND', `no such file: ${pathname}`);
      return;
    }
    const asset = file && pathname !== `${CONSOLE_PATH}/index.html` ? file : index;
    const immutable = asset !== index && pathname.startsWith(`${CONSOLE_PATH}/assets/`);
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': asset.type,
      'content-length': asset.body.length,
      // the page itself is revalidated every time, so a rebuild is picked up at once
      'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  };
}
