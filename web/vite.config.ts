import path from 'node:path';
import { defineConfig } from 'vite';

// The console is served by the API process under /dashboard (src/server/console/static.ts).
// JSX through esbuild's automatic runtime: no React plugin is needed for a production build.
export default defineConfig({
  root: __dirname,
  base: '/dashboard/',
  logLevel: 'warn',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: path.join(__dirname, 'dist'),
    emptyOutDir: true,
    target: 'es2022',
    // no inline data: URLs for assets (the page's CSP allows img data:, but keep files files)
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    rollupOptions: {
      // TanStack Query marks its modules "use client" (for React Server Components); meaningless here
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE') warn(warning);
      },
    },
  },
});
