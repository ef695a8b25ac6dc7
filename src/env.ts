import { existsSync } from 'node:fs';
import { z } from 'zod';
import { parseEncryptionKey } from './lib/secret-box';
import { parseAllowlist } from './lib/net-guard';
import { parseOrigins } from './lib/origins';
import { parseClusterNodes, redisTargetOf, redisUrlProblem } from './lib/redis';

const intFrom = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);

export const ROLES = ['api', 'worker', 'scheduler', 'all'] as const;
export type ProcessRole = (typeof ROLES)[number];

export const envShape = {
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  ROLE: z.enum(ROLES).default('all'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: intFrom(3000, 0, 65535),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
    .default('postgresql://postgres@127.0.0.1:5432/tally'),
  DB_POOL_SIZE: intFrom(10, 1, 200),
  // Scaling (README "Scaling"): a streaming replica for read-only views, and a direct connection
  // beside a transaction pooler (PgBouncer) for what needs a session of its own.
  DATABASE_READ_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL').optional(),
  DATABASE_READ_MAX_LAG_MS: intFrom(5000, 100, 3_600_000),
  DATABASE_DIRECT_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL').optional(),
  REDIS_URL: z
    .string()
    .default('redis://127.0.0.1:6379')
    .superRefine((url, ctx) => {
      const problem = redisUrlProblem(url);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  REDIS_KEY_PREFIX: z.string().default('tally:'),
  // Redis Cluster: its startup nodes (host:port,host:port); REDIS_URL then gives only credentials and TLS.
  REDIS_CLUSTER_NODES: z
    .string()
    .optional()
    .superRefine((spec, ctx) => {
      if (spec === undefined) return;
      for (const message of parseClusterNodes(spec).errors) ctx.addIssue({ code: 'custom', message });
    }),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  BOOTSTRAP_ADMIN_KEY: z
    .string()
    .regex(/^tk_(live|test)_[A-Za-z0-9]{22,}$/, 'must look like tk_live_<at least 22 letters or digits>')
    .optional(),
  EVENT_MAX_AGE_DAYS: intFrom(35, 1, 3650),
  EVENT_MAX_FUTURE_SECONDS: intFrom(300, 0, 86_400),
  MAX_BODY_BYTES: intFrom(1_048_576, 1024, 64 * 1_048_576),
  INGEST_FLUSH_INTERVAL_MS: intFrom(5, 0, 1000),
  INGEST_MAX_GROUP_SIZE: intFrom(500, 1, 5000),
  INGEST_MAX_INFLIGHT_FLUSHES: intFrom(4, 1, 64),
  API_KEY_CACHE_TTL_SECONDS: intFrom(60, 0, 3600),
  API_KEY_USAGE_FLUSH_SECONDS: intFrom(10, 1, 3600),
  SHUTDOWN_TIMEOUT_MS: intFrom(10_000, 100, 300_000),
  USAGE_EVENT_RETENTION_DAYS: intFrom(90, 1, 3650),
  IDEMPOTENCY_KEY_RETENTION_DAYS: intFrom(40, 1, 3650),
  AUDIT_LOG_RETENTION_DAYS: intFrom(365, 1, 36500),
  JOB_RUN_RETENTION_DAYS: intFrom(90, 1, 3650),
  WORKER_CONCURRENCY: intFrom(2, 1, 64),
  JOB_LOCK_MS: intFrom(30_000, 1000, 600_000),
  QUOTA_FAIL_MODE: z.enum(['closed', 'open']).default('closed'),
  QUOTA_LIMITS_CACHE_SECONDS: intFrom(5, 0, 3600),
  QUOTA_REDIS_TIMEOUT_MS: intFrom(1000, 10, 60_000),
  QUOTA_LEASE_MAX_EVENTS: intFrom(256, 0, 10_000),
  WEBHOOK_RETRY_BASE_MS: intFrom(10_000, 10, 3_600_000),
  WEBHOOK_TIMEOUT_MS: intFrom(10_000, 100, 120_000),
  WEBHOOK_SECRET_OVERLAP_HOURS: intFrom(24, 0, 720),
  USAGE_CACHE_TTL_SECONDS: intFrom(300, 0, 86_400),
  EXPORT_STALL_TIMEOUT_MS: intFrom(30_000, 100, 600_000),
  // Webhooks reach public addresses only; these let an operator name internal receivers.
  WEBHOOK_ALLOWED_HOSTS: z
    .string()
    .default('')
    .superRefine((spec, ctx) => {
      for (const message of parseAllowlist(spec).errors) ctx.addIssue({ code: 'custom', message });
    }),
  WEBHOOK_ALLOW_PRIVATE: z.stringbool().default(false),
  EXPORT_POOL_SIZE: intFrom(2, 1, 50),
  EXPORT_MAX_PER_TENANT: intFrom(1, 1, 50),
  EXPORT_MAX_DURATION_MS: intFrom(600_000, 1000, 86_400_000),
  METRICS_TOKEN: z.string().regex(/^[\x21-\x7e]{16,256}$/, 'must be 16 to 256 printable characters without spaces').optional(),
  TRUST_PROXY: intFrom(0, 0, 10),
  AUTH_FAILURE_LIMIT: intFrom(30, 1, 1_000_000),
  AUTH_FAILURE_PREFIX_LIMIT: intFrom(30, 1, 1_000_000),
  AUTH_FAILURE_WINDOW_SECONDS: intFrom(60, 1, 86_400),
  API_KEY_CACHE_MAX_KEYS: intFrom(10_000, 1, 1_000_000),
  API_KEY_CACHE_MAX_REFUSED: intFrom(1_000, 0, 1_000_000),
  // Browser origins other than the API's own that may call /api/* (CORS); empty = same origin only.
  CORS_ALLOWED_ORIGINS: z
    .string()
    .default('')
    .superRefine((spec, ctx) => {
      for (const message of parseOrigins(spec).errors) ctx.addIssue({ code: 'custom', message });
    }),
  // Billing with Stripe (all optional: without a connected account billing jobs do nothing).
  BILLING_ENCRYPTION_KEY: z
    .string()
    .refine((v) => parseEncryptionKey(v) !== null, 'must be 32 bytes, as 64 hex digits or base64')
    .optional(),
  STRIPE_API_BASE: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  BILLING_STRIPE_RPS: intFrom(90, 1, 100_000),
  BILLING_STRIPE_CONCURRENCY: intFrom(32, 1, 1000),
  BILLING_STRIPE_TIMEOUT_MS: intFrom(20_000, 50, 120_000),
  BILLING_SEND_BUDGET_MS: intFrom(240_000, 1000, 3_600_000),
  BILLING_RETRY_BASE_MS: intFrom(1000, 1, 600_000),
  BILLING_WEBHOOK_MAX_BYTES: intFrom(524_288, 1024, 16 * 1_048_576),
  SIGNUP_MODE: z.enum(['off', 'test-only', 'open']).default('off'),
  SIGNUP_LIMIT: intFrom(5, 1, 1_000_000),
  SIGNUP_WINDOW_SECONDS: intFrom(3600, 1, 604_800),
  // Where the web console's bundle lives (relative to the project root); npm start builds it there
  // when it is missing or older than web/'s sources.
  CONSOLE_DIST_DIR: z.string().min(1).max(1000).default('web/dist'),
};

const envSchema = z.object(envShape).superRefine((env, ctx) => {
  // Raw events and their keys must outlive the window in which events may still arrive.
  if (env.USAGE_EVENT_RETENTION_DAYS <= env.EVENT_MAX_AGE_DAYS) {
    ctx.addIssue({ code: 'custom', path: ['USAGE_EVENT_RETENTION_DAYS'], message: `must be more than EVENT_MAX_AGE_DAYS (${env.EVENT_MAX_AGE_DAYS})` });
  }
  if (env.IDEMPOTENCY_KEY_RETENTION_DAYS <= env.EVENT_MAX_AGE_DAYS) {
    ctx.addIssue({ code: 'custom', path: ['IDEMPOTENCY_KEY_RETENTION_DAYS'], message: `must be more than EVENT_MAX_AGE_DAYS (${env.EVENT_MAX_AGE_DAYS})` });
  }
  // On a cluster the first {…} of a key picks its slot: braces in the prefix would put every key in one.
  if (redisTargetOf(env).kind === 'cluster' && /[{}]/.test(env.REDIS_KEY_PREFIX)) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_KEY_PREFIX'], message: 'must not contain { or } on a Redis Cluster (Tally hash-tags its keys itself)' });
  }
});

export type Env = z.infer<typeof envSchema>;

export class ConfigError extends Error {}

/** Parses configuration; every bad or missing variable is named in the message. */
export function loadEnv(source: Record<string, string | undefined> = process.env): Env {
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration (see .env.example):\n${lines.join('\n')}`);
  }
  return parsed.data;
}

/** Loads ./.env into process.env when present; variables already set win. */
export function loadDotEnvFile(file = '.env'): void {
  if (existsSync(file)) process.loadEnvFile(file);
}
