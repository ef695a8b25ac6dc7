import type { Server } from 'node:http';
import { ConfigError, loadDotEnvFile, loadEnv, type Env } from './env';
import { createLogger, type Logger } from './lib/logger';
import { createRedis, describeRedisTarget, redisTargetOf } from './lib/redis';
import { applyMigrations, ensureDatabase } from './lib/migrator';
import { closeServices, createServices, jobDepsOf, prepareData } from './app';
import { createHttpServer } from './server/http';
import { closeWorkers, startWorkers } from '../jobs/worker';
import { Scheduler } from '../jobs/scheduler';
import { ensureConsoleBundle } from './server/console/bundle';
import { closeLingering } from './server/linger';

const START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
const START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no';

function hostOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol.startsWith('redis') ? 6379 : 5432)}`;
  } catch {
    return url;
  }
}

function fail(logger: Logger | undefined, message: string): never {
  if (logger) logger.fatal(message);
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

/** Reachability first, with a message that says which server and how to start it. */
async function checkDependencies(env: Env, logger: Logger): Promise<void> {
  try {
    const created = await ensureDatabase(migrationUrl(env));
    if (created) logger.info('created database');
  } catch (err) {
    fail(
      logger,
      `PostgreSQL is not reachable at ${hostOf(env.DATABASE_URL)} (${(err as Error).message}).\n` +
        `Start it (on Debian: ${START_POSTGRES}) or set DATABASE_URL.`,
    );
  }
  const target = redisTargetOf(env);
  const redis = createRedis(target, { maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 3000 });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    fail(
      logger,
      `Redis is not reachable at ${describeRedisTarget(target)} (${(err as Error).message}).\n` +
        (target.kind === 'cluster' ? 'Check REDIS_CLUSTER_NODES (or the redis+cluster:// REDIS_URL).' : `Start it (${START_REDIS}) or set REDIS_URL.`),
    );
  } finally {
    redis.disconnect();
  }
}

/** Migrations hold session advisory locks: never through a transaction pooler (DATABASE_DIRECT_URL when set). */
function migrationUrl(env: Env): string {
  return env.DATABASE_DIRECT_URL ?? env.DATABASE_URL;
}

async function main(): Promise<void> {
  loadDotEnvFile();
  let env: Env;
  try {
    env = loadEnv();
  } catch (err) {
    if (err instanceof ConfigError) fail(undefined, err.message);
    throw err;
  }
  const logger = createLogger(env.LOG_LEVEL);
  // A backstop, not a way of handling errors: every promise is meant to be handled where it is
  // made. Should one still be missed, Node's default would end the process (the API, workers and
  // scheduler with it) for what is at worst one failed request: log it loudly and keep serving.
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'unhandled promise rejection (a bug: this promise should have been handled); still serving');
  });
  await checkDependencies(env, logger);
  const applied = await applyMigrations(migrationUrl(env), { log: (message, details) => logger.info({ role: env.ROLE, ...details }, message) });
  if (applied.length) logger.info({ applied }, 'applied migrations');

  const services = await createServices(env, logger);
  await prepareData(services);

  const runsApi = env.ROLE === 'api' || env.ROLE === 'all';
  let server: Server | undefined;
  if (runsApi) {
    // The web console's bundle: built here when missing or older than web/'s sources.
    const bundle = ensureConsoleBundle(env.CONSOLE_DIST_DIR, (message) => logger.info(message));
    if (bundle.state === 'built') logger.info({ dir: bundle.distDir }, 'web console built');
    if (bundle.state === 'missing' || bundle.state === 'stale') logger.warn({ dir: bundle.distDir }, bundle.reason);
    server = createHttpServer(services, { consoleUnavailable: bundle.state === 'missing' ? bundle.reason : undefined });
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve) => server!.listen(env.PORT, env.HOST, resolve));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : env.PORT;
    logger.info({ port, role: env.ROLE }, `Tally listening on http://${env.HOST}:${port} (tRPC at /api/trpc)`);
  }
  const runsWorker = env.ROLE === 'worker' || env.ROLE === 'all';
  const runsScheduler = env.ROLE === 'scheduler' || env.ROLE === 'all';
  const workers = runsWorker
    ? startWorkers(
        jobDepsOf(services),
        {
          connection: services.bullConnection,
          prefix: services.queues.prefix,
          concurrency: env.WORKER_CONCURRENCY,
          lockDuration: env.JOB_LOCK_MS,
        },
      )
    : [];
  if (runsWorker) logger.info({ role: env.ROLE, concurrency: env.WORKER_CONCURRENCY }, 'workers started');
  const scheduler = runsScheduler ? new Scheduler(services.queues, services.db.pool, logger, env.EVENT_MAX_AGE_DAYS) : undefined;
  if (scheduler) {
    scheduler.start();
    await scheduler.catchUp();
    await scheduler.catchUpLatest();
    logger.info({ role: env.ROLE }, 'scheduler started');
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: no new requests, finishing in-flight writes');
    const forced = setTimeout(() => {
      logger.error('shutdown timed out');
      process.exit(1);
    }, env.SHUTDOWN_TIMEOUT_MS);
    forced.unref();
    await scheduler?.stop();
    if (server) {
      // close() stops accepting; keep-alive connections are closed as soon as their
      // in-flight request has been answered.
      const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
      // a socket reading the rest of a refused request is owed nothing more (see linger.ts)
      const reap = () => {
        server!.closeIdleConnections();
        closeLingering();
      };
      const reaper = setInterval(reap, 50);
      reap();
      await closed;
      clearInterval(reaper);
    }
    // Workers finish the jobs they are running (a job cut off by the timeout is retried).
    await closeWorkers(workers);
    await closeServices(services);
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`Tally failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
