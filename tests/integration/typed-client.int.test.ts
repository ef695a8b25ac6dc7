import { createTRPCClient, httpLink, TRPCClientError } from '@trpc/client';
import type { AppRouter } from '../../src/server/router';
import { useTestApp } from '../helpers/harness';

const app = useTestApp();

// The README's typed-client example, run for real.
const clientFor = (baseUrl: string, key: string) =>
  createTRPCClient<AppRouter>({
    links: [httpLink({ url: `${baseUrl}/api/trpc`, headers: { authorization: `Bearer ${key}` } })],
  });

it('works end to end with the typed tRPC client', async () => {
  const { ownerKey } = await app.createTenant();
  const tally = clientFor(app.baseUrl, ownerKey);
  const license = await tally.licenses.create.mutate({ name: 'Acme Pro', plan: 'professional', timezone: 'Europe/Berlin' });
  const { eventId, duplicate } = await tally.usage.trackEvent.mutate({
    licenseId: license.id,
    usageType: 'api_call',
    quantity: 1,
    idempotencyKey: 'req-42',
  });
  expect(duplicate).toBe(false);
  const batch = await tally.usage.trackEvents.mutate({
    events: [
      { licenseId: license.id, usageType: 'api_call', idempotencyKey: 'req-42', quantity: 1 },
      { licenseId: license.id, usageType: 'tokens', quantity: '1234.5' },
    ],
  });
  expect(batch.results[0]).toEqual({ index: 0, eventId, status: 'duplicate' });
  const page = await tally.licenses.list.query({ limit: 10 });
  expect(page.items.map((l) => l.id)).toContain(license.id);
  expect(typeof page.items[0]!.createdAt).toBe('string');

  const err = await tally.licenses.get.query({ id: '00000000-0000-4000-8000-000000000000' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(TRPCClientError);
  expect((err as TRPCClientError<AppRouter>).data?.httpStatus).toBe(404);
});
