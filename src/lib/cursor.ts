import { AppError } from './errors';

/** Opaque keyset cursor over (createdAt, id), for lists ordered newest first. */
export interface Keyset {
  createdAt: Date;
  id: string;
}

export function encodeCursor(row: Keyset): string {
  return Buffer.from(`${row.createdAt.toISOString()}|${row.id}`).toString('base64url');
}

export function decodeCursor(cursor: string, listName: string): Keyset {
  const [at, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const createdAt = new Date(at ?? '');
  if (!id || Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/.test(id)) {
    throw new AppError('BAD_REQUEST', `cursor: not a cursor returned by ${listName}`);
  }
  return { createdAt, id };
}

/** The Prisma condition "strictly after the cursor" in (createdAt desc, id desc) order. */
export function afterCursor(after: Keyset | null) {
  return after ? { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] } : {};
}

/** Splits a page fetched with take = limit + 1 into items and the next cursor. */
export function pageOf<T extends Keyset>(rows: T[], limit: number): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
}
