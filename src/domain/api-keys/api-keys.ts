import type { Db } from '../../lib/db';
import type { ApiKeyRole } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { environmentOf, generateApiKey, hashApiKey, publicPrefix, type KeyEnvironment } from './key-material';
import type { KeyRevocations } from './authenticator';

export interface CreateApiKeyArgs {
  tenantId: string | null;
  name: string;
  role: ApiKeyRole;
  environment: KeyEnvironment;
  userEmail?: string | null;
  organization?: string | null;
  metadata?: Record<string, unknown>;
  rateLimitPerHour?: number | null;
  createdByKeyId?: string | null;
}

const publicFields = {
  id: true,
  tenantId: true,
  name: true,
  prefix: true,
  role: true,
  environment: true,
  userEmail: true,
  organization: true,
  metadata: true,
  sdkVersion: true,
  rateLimitPerHour: true,
  requestCount: true,
  lastUsedAt: true,
  createdAt: true,
  revokedAt: true,
} as const;

/** Creates a key and returns its plain text once; only the SHA-256 digest is stored. */
export async function createApiKey(db: Db, args: CreateApiKeyArgs) {
  if (args.role === 'admin' && args.tenantId !== null) {
    throw new AppError('BAD_REQUEST', 'admin keys belong to the platform, not to a tenant');
  }
  if (args.role !== 'admin' && args.tenantId === null) {
    throw new AppError('BAD_REQUEST', 'a tenant key needs a tenant');
  }
  const material = generateApiKey(args.environment);
  const record = await db.apiKey.create({
    data: {
      tenantId: args.tenantId,
      name: args.name,
      prefix: material.prefix,
      keyHash: material.hash,
      role: args.role,
      environment: args.environment,
      userEmail: args.userEmail ?? null,
      organization: args.organization ?? null,
      metadata: (args.metadata ?? {}) as object,
      rateLimitPerHour: args.rateLimitPerHour ?? null,
      createdByKeyId: args.createdByKeyId ?? null,
    },
    select: publicFields,
  });
  return { ...record, key: material.key };
}

/** Ensures a given plain-text key exists as a platform admin key (BOOTSTRAP_ADMIN_KEY). */
export async function ensureAdminKey(db: Db, key: string): Promise<void> {
  const hash = hashApiKey(key);
  try {
    await db.apiKey.upsert({
      where: { keyHash: hash },
      create: {
        tenantId: null,
        name: 'bootstrap admin',
        prefix: publicPrefix(key),
        keyHash: hash,
        role: 'admin',
        environment: environmentOf(key),
      },
      update: {},
    });
  } catch (error) {
    // Prisma's upsert reads, then inserts: processes started together race to insert the key,
    // and those that lose find the unique index holding it, which is all they came for.
    if ((error as { code?: string }).code !== 'P2002') throw error;
  }
}

/** The tenant's keys of one environment: a test key neither sees nor manages live keys. */
export async function listApiKeys(db: Db, tenantId: string, environment: KeyEnvironment, includeRevoked: boolean) {
  return db.apiKey.findMany({
    where: { tenantId, environment, ...(includeRevoked ? {} : { revokedAt: null }) },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    select: publicFields,
  });
}

/** A revoked key must fail at once, in this process and in every other one. */
export async function revokeApiKey(deps: { prisma: Db; revocations: KeyRevocations }, tenantId: string, environment: KeyEnvironment, id: string) {
  const db = deps.prisma;
  const existing = await db.apiKey.findFirst({ where: { id, tenantId, environment }, select: { id: true, revokedAt: true } });
  if (!existing) throw new AppError('NOT_FOUND', 'API key not found');
  const key = existing.revokedAt
    ? await db.apiKey.findUniqueOrThrow({ where: { id }, select: publicFields })
    : await db.apiKey.update({ where: { id }, data: { revokedAt: new Date() }, select: publicFields });
  await deps.revocations.revoked(id);
  return key;
}
