import { randomUUID } from 'node:crypto';
import { useTestApp } from '../helpers/harness';
import { MAX_ORGANIZATION_LENGTH, MAX_USER_EMAIL_LENGTH } from '../../src/domain/usage/event-schema';

// userEmail and organization: columns of the event (issue #14), the email kept out of analytics.
const app = useTestApp({ USAGE_CACHE_TTL_SECONDS: '0' });

const today = new Date().toISOString().slice(0, 10);
const RANGE = { startDate: new Date(Date.now() - 86_400_000).toISOString().slice(0, 10), endDate: today };

/** An email of exactly `length` characters (local part ≤ 64, labels ≤ 63 are not checked by Tally). */
function emailOfLength(length: number): string {
  const domain = '.example.com';
  return `${'a'.repeat(length - 1 - domain.length - 'x'.length)}@x${domain}`;
}

async function world() {
  const { ownerKey, tenantId } = await app.createTenant();
  const license = await app.createLicense(ownerKey);
  return { ownerKey, tenantId, licenseId: license.id };
}

async function eventsOf(tenantId: string) {
  const { rows } = await app.services.db.pool.query<{ user_id: string | null; user_email: string | null; organization: string | null; properties: unknown }>(
    'SELECT user_id, user_email, organization, properties FROM usage_events WHERE tenant_id = $1 ORDER BY occurred_at, id',
    [tenantId],
  );
  return rows;
}

describe('userEmail and organization on events', () => {
  it('stores them in their own columns, not in properties', async () => {
    const { ownerKey, tenantId, licenseId } = await world();
    const res = await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', userId: 'u-1', userEmail: 'ada@example.com', organization: 'Analytical Engines' }, ownerKey);
    expect(res.status).toBe(200);
    expect(await eventsOf(tenantId)).toEqual([{ user_id: 'u-1', user_email: 'ada@example.com', organization: 'Analytical Engines', properties: {} }]);
  });

  it('takes them through the batch and its fast path too, and hashes them (same key, other email → 409)', async () => {
    const { ownerKey, tenantId, licenseId } = await world();
    const event = { licenseId, usageType: 'api_call', idempotencyKey: `k-${randomUUID()}`, userEmail: 'ada@example.com', organization: 'Acme' };
    const first = await app.call('usage.trackEvents', { events: [event] }, ownerKey);
    expect(first.status).toBe(200);
    expect(first.data.accepted).toBe(1);
    const again = await app.call('usage.trackEvents', { events: [event] }, ownerKey);
    expect(again.data.results[0]).toMatchObject({ status: 'duplicate' });
    const other = await app.call('usage.trackEvents', { events: [{ ...event, userEmail: 'bob@example.com' }, { ...event, organization: 'Other' }] }, ownerKey);
    expect(other.data.rejected.map((r: { code: string }) => r.code)).toEqual(['IDEMPOTENCY_CONFLICT', 'IDEMPOTENCY_CONFLICT']);
    expect(await eventsOf(tenantId)).toEqual([{ user_id: null, user_email: 'ada@example.com', organization: 'Acme', properties: {} }]);
  });

  it('refuses a bad email or organization with a 400 naming the field, and writes nothing', async () => {
    const { ownerKey, tenantId, licenseId } = await world();
    const bad: [string, Record<string, unknown>][] = [
      ['userEmail', { userEmail: 'not an email' }],
      ['userEmail', { userEmail: 'ada@' }],
      ['userEmail', { userEmail: 42 }],
      ['userEmail', { userEmail: emailOfLength(MAX_USER_EMAIL_LENGTH + 1) }],
      ['organization', { organization: '' }],
      ['organization', { organization: 'x'.repeat(MAX_ORGANIZATION_LENGTH + 1) }],
      ['organization', { organization: 'Acme\u0000' }],
      ['organization', { organization: ['Acme'] }],
    ];
    for (const [field, fields] of bad) {
      const res = await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', ...fields }, ownerKey);
      expect(res.status).toBe(400);
      expect(JSON.stringify(res.body.error)).toContain(field);
      // and as one event of a batch: that event rejected, naming the field
      const batch = await app.call('usage.trackEvents', { events: [{ licenseId, usageType: 'api_call', ...fields }] }, ownerKey);
      if (batch.status === 200) {
        expect(batch.data.accepted).toBe(0);
        expect(batch.data.rejected[0].message).toContain(field);
      } else {
        expect(batch.status).toBe(400);
        expect(JSON.stringify(batch.body.error)).toContain(field);
      }
    }
    expect(await eventsOf(tenantId)).toEqual([]);
  });

  it('takes the limits at the value and refuses just past it', async () => {
    const { ownerKey, tenantId, licenseId } = await world();
    const email = emailOfLength(MAX_USER_EMAIL_LENGTH);
    expect(email).toHaveLength(254);
    const organization = 'o'.repeat(MAX_ORGANIZATION_LENGTH);
    expect((await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', userEmail: email, organization }, ownerKey)).status).toBe(200);
    expect((await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', userEmail: emailOfLength(255) }, ownerKey)).status).toBe(400);
    expect((await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', organization: `${organization}o` }, ownerKey)).status).toBe(400);
    expect(await eventsOf(tenantId)).toEqual([{ user_id: null, user_email: email, organization, properties: {} }]);
  });

  it('breaks usage down by organization (bounded like the other dimensions); the email appears in no analytics answer', async () => {
    const { ownerKey, licenseId } = await world();
    const readKey = (await app.createKey(ownerKey, 'read')).key;
    const events = [
      ...Array.from({ length: 3 }, (_, i) => ({ licenseId, usageType: 'api_call', quantity: 2, userId: `u-${i}`, userEmail: `user${i}@acme.example`, organization: 'Acme' })),
      { licenseId, usageType: 'api_call', quantity: 1, userId: 'u-9', userEmail: 'nine@globex.example', organization: 'Globex' },
      { licenseId, usageType: 'api_call', quantity: 1, userId: 'u-10', organization: 'Initech' },
      { licenseId, usageType: 'api_call', quantity: 5 },
    ];
    expect((await app.call('usage.trackEvents', { events }, ownerKey)).data.accepted).toBe(events.length);

    const breakdown = await app.call('analytics.breakdown', { ...RANGE, licenseId, by: 'organization', limit: 2 }, readKey, { method: 'GET' });
    expect(breakdown.status).toBe(200);
    expect(breakdown.data.items.map((i: { key: string | null; quantity: string }) => [i.key, i.quantity])).toEqual([
      ['Acme', '6'],
      [null, '5'],
    ]);
    expect(breakdown.data.other).toMatchObject({ keys: 2, quantity: '2', events: 2 });
    const past = await app.call('analytics.breakdown', { ...RANGE, licenseId, by: 'organization', limit: 101 }, readKey, { method: 'GET' });
    expect(past.status).toBe(400);

    const answers = [
      breakdown.body,
      (await app.call('analytics.usage', { ...RANGE, licenseId, granularity: 'daily' }, readKey, { method: 'GET' })).body,
      (await app.call('analytics.topLicenses', RANGE, readKey, { method: 'GET' })).body,
      ...(await Promise.all(
        ['platform', 'deviceType', 'route', 'statusClass', 'sdkVersion', 'usageType', 'country'].map(
          async (by) => (await app.call('analytics.breakdown', { ...RANGE, licenseId, by }, readKey, { method: 'GET' })).body,
        ),
      )),
    ];
    for (const answer of answers) {
      expect(answer).toHaveProperty('result');
      expect(JSON.stringify(answer)).not.toMatch(/@(acme|globex)\.example/);
    }
    // "by: userEmail" is no dimension at all
    expect((await app.call('analytics.breakdown', { ...RANGE, licenseId, by: 'userEmail' }, readKey, { method: 'GET' })).status).toBe(400);
  });

  it('exports organization always and the email only when an owner asks for it', async () => {
    const { ownerKey, licenseId } = await world();
    const readKey = (await app.createKey(ownerKey, 'read')).key;
    await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', userId: 'u-1', userEmail: 'ada@example.com', organization: 'Acme' }, ownerKey);
    const exported = async (key: string, extra = '') => {
      const res = await fetch(`${app.baseUrl}/api/export/events?format=json&licenseId=${licenseId}&startDate=${RANGE.startDate}&endDate=${RANGE.endDate}${extra}`, {
        headers: { authorization: `Bearer ${key}` },
      });
      return { status: res.status, body: res.status === 200 ? ((await res.json()) as Record<string, unknown>[]) : await res.text() };
    };
    const plain = await exported(readKey);
    expect(plain.status).toBe(200);
    expect(plain.body).toEqual([expect.objectContaining({ user_id: 'u-1', organization: 'Acme' })]);
    expect(JSON.stringify(plain.body)).not.toContain('ada@example.com');

    const asked = await exported(readKey, '&includeUserEmail=true');
    expect(asked.status).toBe(403);
    expect(asked.body).toContain('includeUserEmail');
    const link = await app.call('analytics.export', { ...RANGE, includeUserEmail: true }, readKey, { method: 'GET' });
    expect(link.status).toBe(403);

    const owner = await exported(ownerKey, '&includeUserEmail=true');
    expect(owner.status).toBe(200);
    expect(owner.body).toEqual([expect.objectContaining({ user_id: 'u-1', organization: 'Acme', user_email: 'ada@example.com' })]);
    expect((await exported(ownerKey, '&includeUserEmail=yes')).status).toBe(400);
  });

  it('privacy: exported with the user, removed by erasure (organization kept), the hash recomputed without it', async () => {
    const { ownerKey, tenantId, licenseId } = await world();
    const key = `k-${randomUUID()}`;
    await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', userId: 'u-1', userEmail: 'ada@example.com', organization: 'Acme', idempotencyKey: key }, ownerKey);
    await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', userId: 'u-2', userEmail: 'bob@example.com', organization: 'Acme' }, ownerKey);
    // audit-log mentions of the emails: the erased user's is scrubbed, the other user's stays
    const mention = randomUUID();
    await app.services.db.pool.query(
      `INSERT INTO audit_logs (id, tenant_id, action, target_id, metadata) VALUES ($1::uuid, $2, 'test.mention', $1::text, $3), (gen_random_uuid(), $2, 'test.mention', NULL, $4)`,
      [mention, tenantId, JSON.stringify({ contact: 'ada@example.com' }), JSON.stringify({ contact: 'bob@example.com' })],
    );

    const exportUser = await app.call('privacy.exportUser', { userId: 'u-1' }, ownerKey);
    expect(exportUser.status).toBe(200);
    expect(exportUser.data.licenses[0].events[0]).toMatchObject({ userId: 'u-1', userEmail: 'ada@example.com', organization: 'Acme' });

    const { rows: before } = await app.services.db.pool.query<{ payload_hash: string }>('SELECT payload_hash FROM usage_events WHERE tenant_id = $1 AND user_id = $2', [tenantId, 'u-1']);
    const erased = await app.call('privacy.eraseUser', { userId: 'u-1' }, ownerKey);
    expect(erased.status).toBe(200);
    expect(erased.data.events).toBe(1);
    const rows = await eventsOf(tenantId);
    expect(rows).toEqual(
      expect.arrayContaining([
        { user_id: erased.data.pseudonym, user_email: null, organization: 'Acme', properties: {} },
        { user_id: 'u-2', user_email: 'bob@example.com', organization: 'Acme', properties: {} },
      ]),
    );
    const { rows: after } = await app.services.db.pool.query<{ payload_hash: string }>('SELECT payload_hash FROM usage_events WHERE tenant_id = $1 AND user_id = $2', [
      tenantId,
      erased.data.pseudonym,
    ]);
    expect(after[0]!.payload_hash).not.toBe(before[0]!.payload_hash);
    const { rows: audit } = await app.services.db.pool.query<{ metadata: { contact: string } }>(
      "SELECT metadata FROM audit_logs WHERE tenant_id = $1 AND action = 'test.mention' ORDER BY metadata->>'contact'",
      [tenantId],
    );
    expect(audit.map((r) => r.metadata.contact)).toEqual(['bob@example.com', erased.data.pseudonym]);
    // the retry of the erased event is no new event: its key is still claimed
    const retry = await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', userId: 'u-1', userEmail: 'ada@example.com', organization: 'Acme', idempotencyKey: key }, ownerKey);
    expect(retry.status).toBe(409);
  });
});
