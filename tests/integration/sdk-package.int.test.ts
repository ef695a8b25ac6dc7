import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { useTestApp } from '../helpers/harness';

/**
 * The package as it would be published: `npm run build:sdk` writes ESM, CommonJS and declarations;
 * both module formats load by the package name (the exports map) and talk to a real Tally; a
 * TypeScript consumer gets the router's types from the declarations alone; and the core needs
 * nothing from Node (so Bun, Deno and edge runtimes can run it).
 */
const run = promisify(execFile);
const root = path.resolve(__dirname, '..', '..');
const sdk = path.join(root, 'sdk');
const app = useTestApp();

beforeAll(async () => {
  await run('npm', ['run', '-s', 'build:sdk'], { cwd: root });
}, 600_000);

it('keeps the SDK version in one place: package.json and the User-Agent agree', () => {
  const pkg = JSON.parse(readFileSync(path.join(sdk, 'package.json'), 'utf8')) as { version: string; name: string };
  const version = readFileSync(path.join(sdk, 'src', 'version.ts'), 'utf8').match(/SDK_VERSION = '([^']+)'/)?.[1];
  expect([pkg.name, version]).toEqual(['@tally/sdk', pkg.version]);
});

it('imports no Node built-in outside the Node-only adapters', () => {
  const nodeOnly = new Set(['express.ts', 'fastify.ts', 'node.ts']);
  const offenders = readdirSync(path.join(sdk, 'src'))
    .filter((f) => !nodeOnly.has(f))
    .filter((f) => /from '(node:|fs|path|http|https|net|crypto|events|os|child_process)['/]|require\(/.test(readFileSync(path.join(sdk, 'src', f), 'utf8')));
  expect(offenders).toEqual([]);
  for (const f of ['client.js', 'middleware.js', 'hono.js', 'index.js']) {
    expect(readFileSync(path.join(sdk, 'dist', 'esm', f), 'utf8')).not.toMatch(/from ["']node:|\.\.\/\.\.\/src\//);
  }
});

const script = (format: 'esm' | 'cjs', baseUrl: string, key: string, licenseId: string) => {
  const body = `
    const tally = new Tally({ apiKey: ${JSON.stringify(key)}, baseUrl: ${JSON.stringify(baseUrl)}, environment: 'ci', fetch: workerFetch({ minBodyBytes: 0 }) });
    const license = await tally.licenses.get.query({ id: ${JSON.stringify(licenseId)} });
    await tally.track({ licenseId: license.id, usageType: 'api_call', userId: ${JSON.stringify(format)} });
    await tally.shutdown();
    const usage = await tally.usage.current.query({ licenseId: license.id });
    process.stdout.write(JSON.stringify({ stats: tally.stats(), express: typeof tallyExpress, hono: typeof tallyHono, fastify: typeof tallyFastify, node: typeof workerFetch, periods: usage.usage.length }));`;
  return format === 'esm'
    ? `import { Tally } from '@tally/sdk'; import { tallyExpress } from '@tally/sdk/express'; import { tallyHono } from '@tally/sdk/hono'; import { tallyFastify } from '@tally/sdk/fastify'; import { workerFetch } from '@tally/sdk/node';\n${body}`
    : `const { Tally } = require('@tally/sdk'); const { tallyExpress } = require('@tally/sdk/express'); const { tallyHono } = require('@tally/sdk/hono'); const { tallyFastify } = require('@tally/sdk/fastify'); const { workerFetch } = require('@tally/sdk/node');\n(async () => {${body}})();`;
};

it.each(['esm', 'cjs'] as const)('the %s build loads by package name and tracks into Tally (sent from a worker thread)', async (format) => {
  const { ownerKey } = await app.createTenant();
  const { id: licenseId } = await app.createLicense(ownerKey);
  const args = format === 'esm' ? ['--input-type=module', '-e', script(format, app.baseUrl, ownerKey, licenseId)] : ['-e', script(format, app.baseUrl, ownerKey, licenseId)];
  const { stdout } = await run(process.execPath, args, { cwd: root });
  expect(JSON.parse(stdout)).toMatchObject({ stats: { tracked: 1, accepted: 1 }, express: 'function', hono: 'function', fastify: 'function', node: 'function' });
  const { rows } = await app.services.db.pool.query('SELECT user_id FROM usage_events WHERE license_id = $1', [licenseId]);
  expect(rows).toEqual([{ user_id: format }]);
});

it('gives a TypeScript consumer the typed procedures from the declarations alone', async () => {
  const dir = path.join(sdk, '.consumer-check');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  try {
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ['consumer.ts'] }),
    );
    writeFileSync(
      path.join(dir, 'consumer.ts'),
      `import { Tally, type TrackEvent } from '@tally/sdk';
import { tallyExpress } from '@tally/sdk/express';
const tally = new Tally({ apiKey: 'k', baseUrl: 'http://localhost:3000' });
export async function use(): Promise<string> {
  const license = await tally.licenses.get.query({ id: 'x' });
  const used: string = (await tally.usage.current.query({ licenseId: license.id })).usage[0]!.used;
  const event: TrackEvent = { licenseId: license.id, usageType: 'api_call', userEmail: 'a@b.c' };
  await tally.track(event);
  // @ts-expect-error a procedure the router does not have
  tally.licenses.nope;
  // @ts-expect-error licenseId must be a string
  await tally.usage.current.query({ licenseId: 1 });
  return used + typeof tallyExpress;
}
`,
    );
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await run(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json')], { cwd: dir }).then(
      () => ({ code: 0, out: '' }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
    expect(result).toEqual({ code: 0, out: '' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
