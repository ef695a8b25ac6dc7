import { randomBytes, randomUUID } from 'node:crypto';
import type { Db } from '../../lib/db';
import { AppError } from '../../lib/errors';
import { recordAudit } from '../audit/audit-log';
import { generateApiKey, type KeyEnvironment } from '../api-keys/key-material';
import { insertTenantWithOwner } from '../tenants/tenants';

/** SIGNUP_MODE: off refuses every sign-up, test-only hands out test keys only, open both. */
export type SignupMode = 'off' | 'test-only' | 'open';

export interface RegistrationInput {
  email: string;
  name: string;
  organization: string;
  useCase?: string;
  expectedVolume?: string;
  environment: KeyEnvironment;
}

/** Who is signing up, for the audit log. */
export interface SignupCaller {
  ip: string | null;
  userAgent: string | null;
}

/**
 * Said in every answer, a first registration's and a repeat's alike, so that the answer does
 * not tell whether the email was registered before.
 */
export const SIGNUP_NOTICE =
  'Store this key now: it is shown once and cannot be shown again. If this email address was already registered, ' +
  'no new account was created and this key is not valid: the account owner, or the operator, can issue keys.';

/** Registrations are one per email address, compared trimmed and lowercased. */
export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Refuses every sign-up while SIGNUP_MODE is off (checked before input is even read). */
export function assertSignupOpen(mode: SignupMode): void {
  if (mode === 'off') throw new AppError('FORBIDDEN', 'sign-up is turned off on this server (SIGNUP_MODE=off): ask the operator for an API key');
}

/** A tenant slug from the organization's name plus a random suffix (slugs are unique; names need not be). */
export function slugFor(organization: string): string {
  const base = organization
    .normalize('NFKD')
    .replace(/\p{M}/gu, '') // the accents NFKD split off: "Café" → "cafe"
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/, '');
  const suffix = randomBytes(6).readUIntBE(0, 6).toString(36).padStart(8, '0').slice(-8);
  return `${base || 'org'}-${suffix}`;
}

/** Thrown inside the registration's transaction to roll it back when the email is taken. */
class EmailTaken extends Error {}

/**
 * A developer's sign-up: a tenant named after the organization, with an owner key of the
 * requested environment (its plain text returned only here), and the registration row.
 *
 * One tenant per email, and the answer must not reveal whether an email is registered: a
 * repeat gets the same 200 shape, with a fresh key that is never stored and a random tenant
 * id (both unusable), and SIGNUP_NOTICE in both answers. To keep even the work alike, every
 * call does the same writes in one transaction: tenant, key, then the registration row
 * (INSERT … ON CONFLICT DO NOTHING on the unique email); when that row is not inserted the
 * transaction is rolled back, so a repeat leaves nothing but its audit row. The unique index
 * makes it race-safe: a concurrent second insert of the same email waits for the first
 * transaction and then inserts nothing.
 */
export async function registerDeveloper(deps: { prisma: Db; mode: SignupMode }, caller: SignupCaller, input: RegistrationInput) {
  assertSignupOpen(deps.mode);
  if (deps.mode === 'test-only' && input.environment !== 'test') {
    const message = 'environment: this server hands out test keys only (SIGNUP_MODE=test-only); send environment "test"';
    throw new AppError('FORBIDDEN', message, undefined, { issues: [{ path: ['environment'], message, code: 'custom' }] });
  }
  const email = normaliseEmail(input.email);
  const slug = slugFor(input.organization);
  const audit = { actorKeyId: null, actorPrefix: null, action: 'signup.register', targetType: 'tenant', ip: caller.ip, userAgent: caller.userAgent };
  try {
    const { tenant, apiKey } = await deps.prisma.$transaction(async (tx) => {
      const created = await insertTenantWithOwner(tx as unknown as Db, {
        name: input.organization,
        slug,
        timezone: 'UTC',
        owner: { email, organization: input.organization, environment: input.environment },
        createdByKeyId: null,
      });
      const claimed = await tx.registration.createMany({
        data: [
          {
            email,
            name: input.name,
            organization: input.organization,
            useCase: input.useCase ?? null,
            expectedVolume: input.expectedVolume ?? null,
            environment: input.environment,
            tenantId: created.tenant.id,
          },
        ],
        skipDuplicates: true,
      });
      if (claimed.count === 0) throw new EmailTaken();
      // In the same transaction: a registration is never without its audit row. The key's prefix, never the key.
      await recordAudit(tx as unknown as Db, {
        ...audit,
        tenantId: created.tenant.id,
        targetId: created.tenant.id,
        outcome: 'success',
        metadata: { email, environment: input.environment, keyPrefix: created.apiKey.prefix },
      });
      return created;
    });
    return {
      tenant: { id: tenant.id, name: tenant.name, slug: tenant.slug, timezone: tenant.timezone, createdAt: tenant.createdAt },
      apiKey: {
        id: apiKey.id,
        name: apiKey.name,
        prefix: apiKey.prefix,
        role: 'owner' as const,
        environment: apiKey.environment,
        userEmail: apiKey.userEmail,
        organization: apiKey.organization,
        createdAt: apiKey.createdAt,
        key: apiKey.key,
      },
      message: SIGNUP_NOTICE,
    };
  } catch (error) {
    if (!(error instanceof EmailTaken)) throw error;
  }

  // A repeat: the same shape, with a key that was never stored. The audit row goes to the
  // registered tenant, so its owner sees that someone tried again with their address.
  const registered = await deps.prisma.registration.findUnique({ where: { email }, select: { tenantId: true } });
  const now = new Date();
  const decoy = generateApiKey(input.environment);
  await recordAudit(deps.prisma, {
    ...audit,
    tenantId: registered?.tenantId ?? null,
    targetId: registered?.tenantId ?? null,
    outcome: 'refused',
    metadata: { reason: 'email already registered', environment: input.environment, issuedPrefix: decoy.prefix },
  });
  return {
    tenant: { id: randomUUID(), name: input.organization, slug, timezone: 'UTC', createdAt: now },
    apiKey: {
      id: randomUUID(),
      name: 'owner',
      prefix: decoy.prefix,
      role: 'owner' as const,
      environment: input.environment,
      userEmail: email,
      organization: input.organization,
      createdAt: now,
      key: decoy.key,
    },
    message: SIGNUP_NOTICE,
  };
}
