import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * DESIGN §9: src/main.ts → src/app.ts → src/server/ and jobs/ → src/domain/ → src/lib/ and
 * src/env.ts. Arrows never point up, and the tree has no import cycles. Read from the source
 * text (every `import … from` and `import(…)` with a relative path).
 */
const ROOT = path.resolve(__dirname, '..', '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((name) => {
    const rel = path.join(dir, name);
    if (rel === path.join('src', 'generated')) return [];
    if (statSync(path.join(ROOT, rel)).isDirectory()) return sourceFiles(rel);
    return rel.endsWith('.ts') ? [rel] : [];
  });
}

function resolveImport(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const base = path.normalize(path.join(path.dirname(from), spec));
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts'), base]) {
    try {
      if (statSync(path.join(ROOT, candidate)).isFile()) return candidate;
    } catch {
      // not this one
    }
  }
  return null;
}

const files = [...sourceFiles('src'), ...sourceFiles('jobs')];
const graph = new Map<string, { target: string; typeOnly: boolean }[]>(
  files.map((file) => {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    const edges: { target: string; typeOnly: boolean }[] = [];
    for (const m of text.matchAll(/^\s*(?:import|export)\s+(type\s+)?[^;]*?from\s+['"]([^'"]+)['"]/gm)) {
      const target = resolveImport(file, m[2]!);
      if (target) edges.push({ target, typeOnly: Boolean(m[1]) });
    }
    for (const m of text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const target = resolveImport(file, m[1]!);
      if (target) edges.push({ target, typeOnly: false });
    }
    return [file, edges];
  }),
);

const layerOf = (file: string): string => {
  if (file === 'src/main.ts') return 'main';
  if (file === 'src/app.ts' || file === 'src/cli.ts') return 'app';
  if (file.startsWith('src/server/')) return 'server';
  if (file.startsWith('jobs/')) return 'jobs';
  if (file.startsWith('src/domain/')) return 'domain';
  if (file.startsWith('src/lib/') || file.startsWith('src/generated/') || file === 'src/env.ts') return 'lib';
  if (file.startsWith('prisma/')) return 'prisma';
  return 'other';
};

/** Which layers each layer may import from. */
const ALLOWED: Record<string, string[]> = {
  main: ['app', 'server', 'jobs', 'domain', 'lib'],
  app: ['server', 'jobs', 'domain', 'lib'],
  server: ['server', 'domain', 'lib', 'jobs'],
  jobs: ['jobs', 'domain', 'lib'],
  domain: ['domain', 'lib'],
  lib: ['lib'],
};

describe('layers (DESIGN §9)', () => {
  it('has no arrow pointing up: domain and lib import neither jobs/, src/server/, src/app nor prisma/seed', () => {
    expect(files.length).toBeGreaterThan(50);
    const violations: string[] = [];
    for (const [file, edges] of graph) {
      const from = layerOf(file);
      for (const { target } of edges) {
        const to = layerOf(target);
        if (!(ALLOWED[from] ?? []).includes(to)) violations.push(`${file} (${from}) → ${target} (${to})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('keeps tRPC out of the domain and lib, so workers never load it', () => {
    const offenders = files.filter(
      (f) => ['domain', 'lib'].includes(layerOf(f)) && /from\s+['"]@trpc\//.test(readFileSync(path.join(ROOT, f), 'utf8')),
    );
    expect(offenders).toEqual([]);
  });

  it('has no import cycles (type-only imports aside)', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const stack: string[] = [];
    const visit = (file: string) => {
      state.set(file, 'visiting');
      stack.push(file);
      for (const { target, typeOnly } of graph.get(file) ?? []) {
        if (typeOnly) continue;
        if (state.get(target) === 'visiting') cycles.push([...stack.slice(stack.indexOf(target)), target].join(' → '));
        else if (!state.has(target)) visit(target);
      }
      stack.pop();
      state.set(file, 'done');
    };
    for (const file of files) if (!state.has(file)) visit(file);
    expect(cycles).toEqual([]);
  });
});
