import { createTRPCClient, httpLink, TRPCClientError } from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import type { AppRouter } from '../../src/server/router';

export type Inputs = inferRouterInputs<AppRouter>;
export type Outputs = inferRouterOutputs<AppRouter>;
export type Role = Outputs['apiKeys']['me']['role'];

/**
 * The session: the pasted key and, for an admin key, the tenant it acts for. Kept in memory and
 * in sessionStorage (gone when the tab closes), never in a URL or localStorage.
 */
const KEY = 'tally.console.key';
const TENANT = 'tally.console.tenant';
let apiKey: string | null = sessionStorage.getItem(KEY);
let tenantId: string | null = sessionStorage.getItem(TENANT);

export const session = {
  get key() {
    return apiKey;
  },
  get tenantId() {
    return tenantId;
  },
  signIn(key: string) {
    apiKey = key;
    sessionStorage.setItem(KEY, key);
  },
  setTenant(id: string | null) {
    tenantId = id;
    if (id) sessionStorage.setItem(TENANT, id);
    else sessionStorage.removeItem(TENANT);
  },
  signOut() {
    apiKey = null;
    tenantId = null;
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(TENANT);
  },
};

/** Typed end to end from the server's router: plain JSON over /api/trpc, as curl sends it. */
export const api = createTRPCClient<AppRouter>({
  links: [
    httpLink({
      url: '/api/trpc',
      headers: () => {
        const h: Record<string, string> = {};
        if (apiKey) h.authorization = `Bearer ${apiKey}`;
        if (tenantId) h['x-tally-tenant'] = tenantId;
        return h;
      },
    }),
  ],
});

export interface FieldIssue {
  path: string;
  message: string;
}

/** The API's message, and its zod issues by field (for validation shown at the field). */
export function describeError(error: unknown): { message: string; status?: number; fields: FieldIssue[] } {
  if (error instanceof TRPCClientError) {
    const data = error.data as { httpStatus?: number; issues?: { path: (string | number)[]; message: string }[] } | undefined;
    const fields = (data?.issues ?? []).map((i) => ({ path: i.path.join('.'), message: i.message }));
    return { message: error.message, status: data?.httpStatus, fields };
  }
  return { message: error instanceof Error ? error.message : String(error), fields: [] };
}
