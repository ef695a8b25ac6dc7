/**
 * Builds @tally/sdk into dist/: ESM (dist/esm), CommonJS (dist/cjs), each file transpiled on its
 * own with TypeScript (type-only imports vanish, so no server code is ever bundled), and
 * declarations (dist/types) from one type-checked tsc run. Uses only the repository's own
 * TypeScript: no bundler to download. `node sdk/scripts/build.mjs [outDir]`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const sdkDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(sdkDir, 'package.json'));
const ts = require('typescript');
const outDir = path.resolve(process.argv[2] ?? path.join(sdkDir, 'dist'));
const srcDir = path.join(sdkDir, 'src');

rmSync(outDir, { recursive: true, force: true });
const formats = [
  { dir: 'esm', module: ts.ModuleKind.ES2022, type: 'module' },
  { dir: 'cjs', module: ts.ModuleKind.CommonJS, type: 'commonjs' },
];
for (const format of formats) {
  const dir = path.join(outDir, format.dir);
  mkdirSync(dir, { recursive: true });
  for (const file of readdirSync(srcDir).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))) {
    const source = readFileSync(path.join(srcDir, file), 'utf8');
    const { outputText, diagnostics } = ts.transpileModule(source, {
      fileName: file,
      reportDiagnostics: true,
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: format.module, esModuleInterop: true, isolatedModules: true, sourceMap: false },
    });
    if (diagnostics?.length) throw new Error(`${file}: ${ts.flattenDiagnosticMessageText(diagnostics[0].messageText, '\n')}`);
    writeFileSync(path.join(dir, file.replace(/\.ts$/, '.js')), outputText);
  }
  writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ type: format.type })}\n`);
}

const tsc = require.resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(sdkDir, 'tsconfig.build.json'), '--outDir', path.join(outDir, 'types')], { stdio: 'inherit', cwd: sdkDir });
process.stdout.write(`@tally/sdk built into ${path.relative(process.cwd(), outDir) || '.'}\n`);
