import http from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { useTestApp } from '../helpers/harness';

/**
 * The console's static files (/dashboard): public, like /docs, so they must carry no API data,
 * answer only with the bundle's own files (no path reaches outside it), and say why when the
 * bundle is missing. A bundle of known files stands in for Vite's output here (the real build is
 * tested in tests/e2e/console-build.e2e.test.ts).
 */
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tally-static-'));
const dist = path.join(tmp, 'bundle', 'dist');
mkdirSync(path.join(dist, 'assets'), { recursive: true });
writeFileSync(path.join(dist, 'index.html'), '<!doctype html><title>console</title><script type="module" src="/dashboard/assets/app-1a2b.js"></script>');
writeFileSync(path.join(dist, 'assets', 'app-1a2b.js'), 'console.log("app")');
writeFileSync(path.join(tmp, 'bundle', 'secret.txt'), 'TOP-SECRET-NEXT-TO-THE-BUNDLE');
writeFileSync(path.join(tmp, 'secret.txt'), 'TOP-SECRET-ABOVE');

const app = useTestApp({ CONSOLE_DIST_DIR: dist });
const missing = useTestApp({ CONSOLE_DIST_DIR: path.join(tmp, 'nothing-here') });

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A request with the path exactly as written (fetch would normalize `..` away). */
function raw(baseUrl: string, rawPath: string, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path: rawPath, method }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('/dashboard static files', () => {
  it('serves the page (no-cache) for the console’s routes and hashed assets for a year, with a self-only CSP', async () => {
    for (const p of ['/dashboard', '/dashboard/', '/dashboard/licenses/0b7f3c1e-5e0e-4f39-9a57-3d4a1d2c5e6f?g=daily', '/dashboard/operator']) {
      const res = await raw(app.baseUrl, p);
      expect([p, res.status, res.headers['cache-control'], res.body]).toEqual([p, 200, 'no-cache', expect.stringContaining('<title>console</title>')]);
      expect(res.headers['content-security-policy']).toMatch(/^default-src 'none'; script-src 'self'; style-src 'self';/);
      expect(res.headers['content-security-policy']).not.toMatch(/unsafe|\*/);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
    const js = await raw(app.baseUrl, '/dashboard/assets/app-1a2b.js');
    expect([js.status, js.headers['cache-control'], js.headers['content-type'], js.body]).toEqual([200, 'public, max-age=31536000, immutable', 'text/javascript; charset=utf-8', 'console.log("app")']);
    const head = await raw(app.baseUrl, '/dashboard/assets/app-1a2b.js', 'HEAD');
    expect([head.status, head.headers['content-length'], head.body]).toEqual([200, '18', '']);
    const root = await raw(app.baseUrl, '/');
    expect([root.status, root.headers.location]).toEqual([302, '/dashboard/']);
  });

  it('never answers with a file outside the bundle, however the path is written', async () => {
    const attempts = [
      '/dashboard/../secret.txt',
      '/dashboard/../../secret.txt',
      '/dashboard/assets/../../secret.txt',
      '/dashboard/assets/..%2f..%2fsecret.txt',
      '/dashboard/assets/%2e%2e/%2e%2e/secret.txt',
      '/dashboard/assets/%2e%2e%2f%2e%2e%2fsecret.txt',
      '/dashboard/assets/..\\..\\secret.txt',
      '/dashboard/assets/%2F%2Fetc%2Fpasswd',
      '/dashboard/assets//etc/passwd',
      '/dashboard/%00/../secret.txt',
      '/dashboard/..%5c..%5csecret.txt',
      `/dashboard/assets/${encodeURIComponent(path.join(tmp, 'secret.txt'))}`,
      '/dashboard/index.html/../../secret.txt',
    ];
    for (const p of attempts) {
      const res = await raw(app.baseUrl, p);
      expect([p, res.body]).not.toEqual([p, expect.stringContaining('TOP-SECRET')]);
      expect([p, res.body.includes('root:')]).toEqual([p, false]);
      // under assets/ a name that is not one of the bundle's files is a 404; elsewhere the page
      if (p.startsWith('/dashboard/assets/')) expect([p, res.status]).toEqual([p, 404]);
      else expect([p, res.status]).toEqual([p, expect.any(Number)]);
    }
  });

  it('carries no API data: a path that looks like the API gets the page, with or without a key', async () => {
    const { ownerKey } = await app.createTenant();
    await app.createLicense(ownerKey, { name: 'Not-In-Static-Files' });
    for (const key of [null, ownerKey]) {
      const res = await fetch(`${app.baseUrl}/dashboard/api/trpc/licenses.list`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
      const body = await res.text();
      expect([res.status, body.includes('Not-In-Static-Files'), body]).toEqual([200, false, expect.stringContaining('<title>console</title>')]);
    }
  });

  it('counts every console request under one metrics label, whatever its path', async () => {
    await raw(app.baseUrl, '/dashboard/licenses/some-path-a-client-made-up');
    const metrics = await (await fetch(`${app.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/tally_http_requests_total\{procedure="\/dashboard",status="200"\}/);
    expect(metrics).not.toMatch(/procedure="\/dashboard\//);
  });

  it('refuses methods other than GET and HEAD with 405', async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await raw(app.baseUrl, '/dashboard/', method);
      expect([method, res.status, res.headers.allow]).toEqual([method, 405, 'GET, HEAD']);
    }
  });

  it('says the console is not built (503) when the bundle is missing, and still serves the API', async () => {
    const res = await raw(missing.baseUrl, '/dashboard/');
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'SERVICE_UNAVAILABLE', message: expect.stringMatching(/not been built|npm start/) } });
    expect((await fetch(`${missing.baseUrl}/health`)).status).toBe(200);
  });
});
