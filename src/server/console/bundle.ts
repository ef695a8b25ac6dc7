import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

/** The project root: the web console's sources are under web/, next to src/. */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..', '..');
export const CONSOLE_SOURCE_DIR = path.join(PROJECT_ROOT, 'web');

/** The bundle's folder, from CONSOLE_DIST_DIR (relative to the project root unless absolute). */
export function consoleDistDir(configured: string): string {
  return path.resolve(PROJECT_ROOT, configured);
}

/** Newest modification time of the files the bundle is built from (web/ minus its output, and the lockfile). */
function newestSourceMtime(distDir: string): number {
  let newest = 0;
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (full === distDir || entry.name === 'node_modules' || entry.name.startsWith('dist')) continue;
      if (entry.isDirectory()) visit(full);
      else newest = Math.max(newest, statSync(full).mtimeMs);
    }
  };
  // No sources (the production image ships the bundle alone): nothing can be newer than it.
  if (!existsSync(path.join(CONSOLE_SOURCE_DIR, 'src'))) return 0;
  visit(CONSOLE_SOURCE_DIR);
  const lock = path.join(PROJECT_ROOT, 'package-lock.json');
  if (existsSync(lock)) newest = Math.max(newest, statSync(lock).mtimeMs);
  return newest;
}

export type BundleState = { state: 'fresh' | 'built'; distDir: string } | { state: 'missing' | 'stale'; distDir: string; reason: string };

/**
 * Builds the console with Vite when its index.html is missing or older than any of its sources.
 * Where Vite is not installed (the production image installs no dev dependencies and ships the
 * bundle its build stage made, without the sources), a present bundle is served as it is.
 * Synchronous on purpose: it runs once, before the server listens.
 */
export function ensureConsoleBundle(configured: string, log: (message: string) => void = () => undefined): BundleState {
  const distDir = consoleDistDir(configured);
  const index = path.join(distDir, 'index.html');
  const builtAt = existsSync(index) ? statSync(index).mtimeMs : null;
  const sourcesAt = newestSourceMtime(distDir);
  if (builtAt !== null && (sourcesAt === 0 || builtAt >= sourcesAt)) return { state: 'fresh', distDir };
  const why = builtAt === null ? 'missing' : 'older than its sources';
  let viteBin: string;
  try {
    viteBin = path.join(path.dirname(require.resolve('vite/package.json', { paths: [PROJECT_ROOT] })), 'bin', 'vite.js');
  } catch {
    const reason = `the web console's bundle is ${why} and Vite is not installed (npm install, then npm start, builds it)`;
    return { state: builtAt === null ? 'missing' : 'stale', distDir, reason };
  }
  log(`building the web console (bundle ${why}) into ${distDir}`);
  // Built beside the bundle and swapped in: a server reading the old one, or another process
  // building at the same time (two test files starting Tally), never sees a half-written folder.
  const building = `${distDir}.building-${process.pid}`;
  const result = spawnSync(process.execPath, [viteBin, 'build', '--config', path.join(CONSOLE_SOURCE_DIR, 'vite.config.ts'), '--outDir', building, '--emptyOutDir', '--logLevel', 'warn'], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    env: { ...process.env, NODE_ENV: 'production' },
  });
  if (result.status !== 0) {
    rmSync(building, { recursive: true, force: true });
    const reason = `building the web console failed: ${(result.stderr || result.stdout || String(result.error ?? '')).trim().slice(-2000)}`;
    return { state: builtAt === null ? 'missing' : 'stale', distDir, reason };
  }
  const old = `${distDir}.old-${process.pid}`;
  if (existsSync(distDir)) renameSync(distDir, old);
  renameSync(building, distDir);
  rmSync(old, { recursive: true, force: true });
  return { state: 'built', distDir };
}
