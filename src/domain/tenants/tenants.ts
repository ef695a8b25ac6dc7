import type { Db } from '../../lib/db';
import { AppError } from '../../lib/errors';
import { createApiKey } from '../api-keys/api-keys';
import type { KeyEnvironment } from '../api-keys/key-material';

export interface CreateTenantArgs {
  name: string;
  slug: string;
  timezone: string;
  owner: { email?: string; organization?: string; environment: KeyEnvironment };
  createdByKeyId: string | null;
}

/** Creates a tenant and its first owner key; the key's plain text is returned only here. */
export async function createTenant(db: Db, args: CreateTenantArgs) {
  const taken = await db.tenant.findUnique({ where: { slug: args.slug }, select: { id: true } });
  if (taken) throw new AppError('CONFLICT', `slug: "${args.slug}" is already taken`);
  return db.$transaction((tx) => insertTenantWithOwner(tx as unknown as Db, args));
}

/** The rows of createTenant inside the caller's transaction `tx` (sign-up adds its own row to it). */
export async function insertTenantWithOwner(tx: Db, args: CreateTenantArgs) {
  const tenant = await tx.tenant.create({ data: { name: args.name, slug: args.slug, timezone: args.timezone } });
  const apiKey = await createApiKey(tx, {
    tenantId: tenant.id,
    name: 'owner',
    role: 'owner',
    environment: args.owner.environment,
    userEmail: args.owner.email,
    organization: args.owner.organization ?? args.name,
    createdByKeyId: args.createdByKeyId,
  });
  return { tenant, apiKey };
}

export async function getTenant(db: Db, id: string) {
  const tenant = await db.tenant.findUnique({ where: { id } });
  if (!tenant) throw new AppError('NOT_FOUND', 'tenant not found');
  return tenant;
}

export async function listTenants(db: Db, args: { cursor?: string; limit: number }) {
  const rows = await db.tenant.findMany({
    orderBy: { id: 'asc' },
    where: args.cursor ? { id: { gt: args.cursor } } : undefined,
    take: args.limit + 1,
  });
  const items = rows.slice(0, args.limit);
  return { items, nextCursor: rows.length > args.limit ? (items.at(-1)?.id ?? null) : null };
}
