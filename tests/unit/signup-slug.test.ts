import fc from 'fast-check';
import { normaliseEmail, slugFor } from '../../src/domain/signup/register';
import { createTenantInput } from '../../src/server/routers/tenants/schemas';

/** The slug rule tenants.create enforces; a sign-up's slug must pass it too. */
const slugRule = createTenantInput.shape.slug;

describe('sign-up slugs', () => {
  it('are valid tenant slugs for any organization name, named after it where it has letters or digits', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 200, unit: 'grapheme' }), (organization) => {
        const slug = slugFor(organization);
        expect(slugRule.safeParse(slug).success).toBe(true);
        expect(slug.length).toBeLessThanOrEqual(49);
      }),
      { numRuns: 500 },
    );
    expect(slugFor('Acme Corp. GmbH')).toMatch(/^acme-corp-gmbh-[a-z0-9]{8}$/);
    expect(slugFor('Café Ünïcode')).toMatch(/^cafe-unicode-[a-z0-9]{8}$/);
    expect(slugFor('日本')).toMatch(/^org-[a-z0-9]{8}$/);
    expect(slugFor(`${'a'.repeat(39)} b`)).toMatch(/^a{39}-[a-z0-9]{8}$/);
    expect(slugFor('x')).not.toBe(slugFor('x'));
  });

  it('compares emails trimmed and lowercased', () => {
    expect(normaliseEmail('  Ada.Dev@Example.COM ')).toBe('ada.dev@example.com');
  });
});
