import { defineConfig } from 'prisma/config';

// Prisma 7 does not load .env itself; the service's own config (src/env.ts) is the source
// of truth, this fallback only serves the CLI.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/tally' },
});
