import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OPENAPI_PATH } from './routes';

export const DOCS_PATH = '/docs';

/**
 * The interactive API reference: Swagger UI served from the swagger-ui-dist package, so it works
 * offline (no CDN). The page loads only this server's files (its CSP says so), reads
 * /api/v1/openapi.json, and keeps the API key a reader enters in the page's memory only (no
 * persistence, nothing in URLs). Swagger UI's default badge would ask validator.swagger.io to
 * check the document; it is switched off.
 */
const INIT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: ${JSON.stringify(OPENAPI_PATH)},
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tally API reference</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="${DOCS_PATH}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="${DOCS_PATH}/swagger-ui-bundle.js"></script>
  <script src="${DOCS_PATH}/init.js"></script>
</body>
</html>
`;

const ASSETS: Record<string, { file?: string; text?: string; type: string }> = {
  [DOCS_PATH]: { text: PAGE, type: 'text/html; charset=utf-8' },
  [`${DOCS_PATH}/`]: { text: PAGE, type: 'text/html; charset=utf-8' },
  [`${DOCS_PATH}/init.js`]: { text: INIT, type: 'text/javascript; charset=utf-8' },
  [`${DOCS_PATH}/swagger-ui.css`]: { file: 'swagger-ui.css', type: 'text/css; charset=utf-8' },
  [`${DOCS_PATH}/swagger-ui-bundle.js`]: { file: 'swagger-ui-bundle.js', type: 'text/javascript; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function isDocsPath(pathname: string): boolean {
  return pathname === DOCS_PATH || pathname.startsWith(`${DOCS_PATH}/`);
}

export function createDocsHandler() {
  const dist = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  const cache = new Map<string, Buffer>();

  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const pathname = (req.url ?? '/').split('?')[0]!;
    const asset = ASSETS[pathname];
    if (!asset) {
      const text = JSON.stringify({ error: { code: 'NOT_FOUND', message: `no such file: ${pathname}` } });
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const text = JSON.stringify({ error: { code: 'METHOD_NOT_SUPPORTED', message: `${req.method} ${pathname}: use GET` } });
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    let body = cache.get(pathname);
    if (!body) {
      body = asset.file ? await readFile(path.join(dist, asset.file)) : Buffer.from(asset.text!);
      cache.set(pathname, body);
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'content-length': body.length, 'cache-control': 'public, max-age=3600' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}
