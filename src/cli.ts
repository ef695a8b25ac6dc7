import { loadDotEnvFile, loadEnv } from './env';
import { createDatabase } from './lib/db';
import { applyMigrations, ensureDatabase } from './lib/migrator';
import { createApiKey } from './domain/api-keys/api-keys';

const USAGE = `usage: npm run cli -- <command>
  keys:create --admin [--name NAME] [--test]   create a platform admin key and print it once`;

async function main(): Promise<void> {
  const [command, ...args] = process.argv.slice(2);
  if (command !== 'keys:create' || !args.includes('--admin')) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  loadDotEnvFile();
  const env = loadEnv();
  // Migrations hold session advisory locks: never through a transaction pooler.
  await ensureDatabase(env.DATABASE_DIRECT_URL ?? env.DATABASE_URL);
  await applyMigrations(env.DATABASE_DIRECT_URL ?? env.DATABASE_URL, { log: (message) => process.stderr.write(`${message}\n`) });
  const db = createDatabase(env.DATABASE_URL, 1, 1, { directUrl: env.DATABASE_DIRECT_URL });
  try {
    const nameAt = args.indexOf('--name');
    const key = await createApiKey(db.prisma, {
      tenantId: null,
      name: nameAt >= 0 ? (args[nameAt + 1] ?? 'admin') : 'admin',
      role: 'admin',
      environment: args.includes('--test') ? 'test' : 'live',
    });
    process.stdout.write(`${key.key}\n`);
    process.stderr.write(`admin key ${key.prefix}… created (id ${key.id}); it is shown only this once.\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
