import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { useTestApp } from '../helpers/harness';
import { launchChromium } from '../helpers/browser';
import { ensureConsoleBundle } from '../../src/server/console/bundle';
import { loadLicenseLimits } from '../../src/domain/quotas/limits';
import { forecastLicense } from '../../src/domain/forecasts/daily-forecasts';

/**
 * The web console in headless Chromium against a real Tally (PostgreSQL, Redis), with data sent
 * through the API. Screenshots of each page go to test-artifacts/console/.
 */
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'console');
const WEBHOOK_URL = 'https://93.184.215.14/tally-hook'; // a public address: webhook address rules refuse private ones
const TZ = 'Europe/Berlin';

// a browser on a shared 2-core machine: each test gets room (the whole file takes ~1.5 min alone)
jest.setTimeout(150_000);

const app = useTestApp();
let browser: Browser;
let owner: string;
let tenantId: string;
let readKey: string;
let licenseId: string;
let endpoint: { id: string; secret: string };
const problems: string[] = [];

const get = async (procedure: string, input: unknown, key = owner) => {
  const res = await app.call(procedure, input, key, { method: 'GET' });
  if (res.status !== 200) throw new Error(`${procedure}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.data;
};

function localDate(at: Date): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit' }).format(at);
}

async function newPage(context?: BrowserContext, viewport = { width: 1280, height: 900 }): Promise<Page> {
  const ctx = context ?? (await browser.newContext({ viewport, locale: 'en-US' }));
  const page = await ctx.newPage();
  // a CSP refusal, a failed script or an uncaught error is a failure of the page
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  return page;
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.goto(`${app.baseUrl}/`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const bundle = ensureConsoleBundle('web/dist');
  if (bundle.state === 'missing' || bundle.state === 'stale') throw new Error(bundle.reason);
  browser = await launchChromium();
  ({ ownerKey: owner, tenantId } = await app.createTenant('Console Co'));
  readKey = (await app.createKey(owner, 'read')).key;
  licenseId = (await app.createLicense(owner, { name: 'Acme production', plan: 'starter', timezone: TZ, externalId: 'acme-prod' })).id;
  await app.createLicense(owner, { name: 'Globex staging', plan: 'trial', timezone: 'UTC' });
  // ten days of api_call with decimals and dimensions, each day under starter's 34/day
  const now = Date.now();
  const events = [];
  for (let day = 9; day >= 0; day--) {
    for (let i = 0; i < 4; i++) {
      events.push({
        licenseId,
        usageType: 'api_call',
        quantity: i === 3 ? '0.125' : '2.5',
        occurredAt: new Date(now - day * 86_400_000 - i * 60_000).toISOString(),
        platform: i % 2 ? 'ios' : 'web',
        route: i % 2 ? '/v1/search' : '/v1/items',
        statusCode: i === 2 ? 500 : 200,
        sdkVersion: '1.4.0',
        userId: `user-${i}`,
      });
    }
  }
  const tracked = await app.call('usage.trackEvents', { events }, owner);
  expect(tracked.status).toBe(200);
  // a soft daily limit on tokens, passed: an overage, detected at ingestion
  const th = await app.call('thresholds.create', { licenseId, usageType: 'tokens', periodType: 'daily', limitQuantity: '10', allowOverage: true, overageRateCents: 25 }, owner);
  expect(th.status).toBe(200);
  expect((await app.call('usage.trackEvent', { licenseId, usageType: 'tokens', quantity: '14.75' }, owner)).status).toBe(200);
  const hook = await app.call('webhooks.create', { url: WEBHOOK_URL }, owner);
  expect(hook.status).toBe(200);
  endpoint = { id: hook.data.id, secret: hook.data.secret };
  // the daily forecast job's work for this one license (the job itself runs over every license of the database)
  const limits = await loadLicenseLimits(app.prisma, tenantId, licenseId);
  await forecastLicense({ pool: app.services.db.pool, prisma: app.prisma }, limits!, new Date());
}, 240_000);

afterAll(async () => {
  await browser?.close();
});

afterEach(() => {
  expect(problems).toEqual([]);
  problems.length = 0;
});

describe('web console', () => {
  it('is served at /dashboard with its CSP and caching, and / leads there', async () => {
    const root = await fetch(`${app.baseUrl}/`, { redirect: 'manual' });
    expect([root.status, root.headers.get('location')]).toEqual([302, '/dashboard/']);
    const page = await fetch(`${app.baseUrl}/dashboard/licenses/${licenseId}?g=daily`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self'; style-src 'self'/);
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const html = await page.text();
    const script = /src="(\/dashboard\/assets\/[^"]+\.js)"/.exec(html)![1]!;
    const asset = await fetch(`${app.baseUrl}${script}`);
    expect([asset.status, asset.headers.get('cache-control'), asset.headers.get('content-type')]).toEqual([200, 'public, max-age=31536000, immutable', 'text/javascript; charset=utf-8']);
  });

  it('signs an owner in; a license’s progress bars show what usage.current says', async () => {
    const page = await newPage();
    await page.goto(`${app.baseUrl}/dashboard/`);
    await shot(page, '01-sign-in');
    await signIn(page, owner);
    expect(page.url()).not.toContain(owner);
    expect(await page.evaluate('window.localStorage.length')).toBe(0);
    const card = page.locator(`[data-license-id="${licenseId}"]`);
    await card.locator('.usage-bar-text').first().waitFor();
    const current = await get('usage.current', { licenseId });
    const limited = current.usage.filter((u: any) => u.limit !== null);
    expect(limited.length).toBeGreaterThan(1);
    const bars = await card.locator('.usage-bar-text').evaluateAll((els) => els.map((e) => [e.getAttribute('data-used'), e.getAttribute('data-limit')]));
    expect(bars).toEqual(limited.map((u: any) => [u.used, u.limit]));
    // the numbers shown are the exact decimals, grouped in the locale (en-US here)
    const daily = limited.find((u: any) => u.usageType === 'api_call' && u.period === 'daily');
    await expect(card.getByText(`${daily.used} of ${daily.limit}`, { exact: false }).count()).resolves.toBeGreaterThan(0);
    // coloured at the warning levels: tokens' 14.75 of 10 is past 100 %
    expect(await card.locator('.usage-bar[data-level="100"]').count()).toBeGreaterThan(0);
    await card.getByText(/Forecast \(api_call/).first().waitFor();
    // search filters the page, and the search is in the URL
    await page.getByLabel('Search by name, external id or id').fill('globex');
    await expect(page.locator('[data-license-id]').count()).resolves.toBe(1);
    expect(new URL(page.url()).searchParams.get('q')).toBe('globex');
    await page.getByLabel('Search by name, external id or id').fill('');
    await shot(page, '02-licenses');
    await page.close();
  });

  it('draws the usage chart from analytics.usage for the range and granularity in the URL', async () => {
    const page = await newPage();
    await signIn(page, owner);
    await page.getByRole('link', { name: 'Acme production' }).click();
    await page.getByRole('heading', { name: 'Acme production' }).waitFor();
    await page.getByRole('button', { name: '7 days' }).click();
    const check = async (granularity: string) => {
      const url = new URL(page.url());
      expect(url.pathname).toBe(`/dashboard/licenses/${licenseId}`);
      const from = url.searchParams.get('from')!;
      const to = url.searchParams.get('to')!;
      expect(url.searchParams.get('g') ?? 'daily').toBe(granularity);
      const expected = await get('analytics.usage', { licenseId, startDate: from, endDate: to, granularity, timezone: TZ });
      await page.locator(`.chart[data-drawn^="${granularity}:${from}:${to}:"]`).waitFor();
      expect(Number(await page.locator('.chart').first().getAttribute('data-points'))).toBe(expected.timeSeries.length);
      const details = page.locator('details', { hasText: 'Show the data as a table' });
      if ((await details.getAttribute('open')) === null) await details.locator('summary').click();
      const rows = await page.locator('table[aria-label="Usage per period"] tbody tr').evaluateAll((trs) => trs.map((tr) => [tr.getAttribute('data-period'), tr.getAttribute('data-quantity')]));
      expect(rows).toEqual(expected.timeSeries.map((p: any) => [p.period, p.quantity]));
      return expected;
    };
    const week = await check('daily');
    expect(week.timeSeries).toHaveLength(7);
    expect(week.timeSeries.filter((p: any) => p.quantity === '0')).toHaveLength(0);
    await page.getByLabel('Granularity', { exact: true }).selectOption('hourly');
    const hourly = await check('hourly');
    expect(hourly.timeSeries.length).toBeGreaterThanOrEqual(7 * 24 - 1);
    // zeros are points too
    expect(hourly.timeSeries.some((p: any) => p.quantity === '0')).toBe(true);
    await page.getByLabel('From', { exact: true }).fill(localDate(new Date(Date.now() - 40 * 86_400_000)));
    await page.getByLabel('Granularity', { exact: true }).selectOption('weekly');
    await check('weekly');
    // the shared URL opens the same view
    const shared = await newPage();
    await shared.context().addInitScript(`window.sessionStorage.setItem('tally.console.key', ${JSON.stringify(owner)})`);
    await shared.goto(page.url());
    await shared.locator('.chart[data-drawn^="weekly:"]').waitFor();
    await shared.close();
    await page.getByLabel('Granularity', { exact: true }).selectOption('daily');
    await page.getByRole('button', { name: '30 days' }).click();
    await page.locator('.chart[data-drawn^="daily:"]').first().waitFor();
    await page.locator('.forecast-figure .chart[data-drawn]').first().waitFor();
    await page.getByText(`the license’s time zone`).waitFor();
    const table = page.locator('details', { hasText: 'Show the data as a table' });
    if ((await table.getAttribute('open')) !== null) await table.locator('summary').click();
    await shot(page, '03-license');
    // the top of the page (chart, forecast, current periods): the README's picture (docs/console-license.png)
    await page.screenshot({ path: path.join(ARTIFACTS, '03-license-top.png'), fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1500 } });
    await page.close();
  });

  it('creates a threshold: a bad limit is refused at the field, then a good one is saved', async () => {
    const page = await newPage();
    await signIn(page, owner);
    await page.goto(`${app.baseUrl}/dashboard/licenses/${licenseId}`);
    await page.getByRole('button', { name: 'Add threshold' }).click();
    await page.locator('#th-usageType').fill('exports');
    await page.getByLabel('Limit', { exact: true }).fill('-5');
    await page.getByRole('button', { name: 'Create threshold' }).click();
    const fieldError = page.locator('#th-limitQuantity-error');
    await fieldError.waitFor();
    expect(await fieldError.textContent()).toMatch(/must be (at least|more than) 0/);
    expect(await page.getByLabel('Limit', { exact: true }).getAttribute('aria-invalid')).toBe('true');
    expect((await get('thresholds.list', { licenseId })).items.filter((t: any) => t.usageType === 'exports')).toHaveLength(0);
    await shot(page, '04-threshold-invalid');
    await page.getByLabel('Limit', { exact: true }).fill('1234567.25');
    await page.getByRole('button', { name: 'Create threshold' }).click();
    await page.locator('table[aria-label="Thresholds"] tr', { hasText: 'exports' }).waitFor();
    expect(await page.locator('table[aria-label="Thresholds"] tr', { hasText: 'exports' }).textContent()).toContain('1,234,567.25');
    const saved = (await get('thresholds.list', { licenseId })).items.filter((t: any) => t.usageType === 'exports');
    expect(saved).toMatchObject([{ limitQuantity: '1234567.25', periodType: 'monthly', warningLevels: [50, 80, 95] }]);
    await page.close();
  });

  it('approves an overage', async () => {
    const [overage] = (await get('overages.list', { licenseId })).items;
    expect(overage).toMatchObject({ status: 'DETECTED' });
    const page = await newPage();
    await signIn(page, owner);
    await page.goto(`${app.baseUrl}/dashboard/licenses/${licenseId}`);
    const row = page.locator(`[data-overage-id="${overage.id}"]`);
    await row.getByRole('button', { name: 'Approve' }).click();
    await row.getByText('APPROVED').waitFor();
    expect((await get('overages.list', { licenseId })).items[0]).toMatchObject({ id: overage.id, status: 'APPROVED' });
    await page.close();
  });

  it('creates a key (shown once), then revokes it after confirmation', async () => {
    const page = await newPage();
    await signIn(page, owner);
    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByLabel('Name').fill('made in the console');
    await page.getByLabel('Role').selectOption('read');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = (await page.getByTestId('shown-once-secret').textContent())!.trim();
    expect(secret).toMatch(/^tk_live_/);
    expect((await app.call('apiKeys.me', undefined, secret, { method: 'GET' })).data).toMatchObject({ name: 'made in the console', role: 'read' });
    await shot(page, '05-api-keys');
    await page.getByRole('button', { name: 'Done' }).click();
    const row = page.locator('tr', { hasText: 'made in the console' });
    await row.getByRole('button', { name: 'Revoke' }).click();
    await row.getByRole('button', { name: 'Revoke key' }).click();
    await page.locator('tr', { hasText: 'made in the console' }).waitFor({ state: 'detached' });
    expect((await app.call('apiKeys.me', undefined, secret, { method: 'GET' })).status).toBe(401);
    await page.close();
  });

  it('rotates a webhook secret (the new one shown once) and shows the delivery log', async () => {
    const page = await newPage();
    await signIn(page, owner);
    await page.getByRole('link', { name: 'Webhooks' }).click();
    const card = page.locator(`[data-endpoint-id="${endpoint.id}"]`);
    await card.getByRole('button', { name: 'Rotate secret' }).click();
    await card.getByRole('button', { name: 'Rotate now' }).click();
    const secret = (await page.getByTestId('shown-once-secret').textContent())!.trim();
    expect(secret).not.toBe(endpoint.secret);
    expect(secret.length).toBeGreaterThan(20);
    expect((await get('webhooks.list', {})).items.find((w: any) => w.id === endpoint.id)).toMatchObject({ rotating: true });
    await card.getByRole('button', { name: 'Show deliveries' }).click();
    await card.getByText(/Nothing delivered yet|Delivery log/).first().waitFor();
    await shot(page, '06-webhooks');
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.locator('table[aria-label="Audit log entries"] tr', { hasText: 'webhooks.rotateSecret' }).first().waitFor();
    await page.getByLabel('Outcome').selectOption('success');
    expect(new URL(page.url()).searchParams.get('outcome')).toBe('success');
    await shot(page, '07-audit');
    await page.getByRole('link', { name: 'Billing' }).click();
    await page.getByRole('heading', { name: 'Billing' }).waitFor();
    await page.locator('.state').first().waitFor();
    await shot(page, '08-billing');
    // signing out forgets the key
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    expect(await page.evaluate('[window.sessionStorage.length, window.localStorage.length]')).toEqual([0, 0]);
    await page.close();
  });

  it('shows a read key no button that writes', async () => {
    const page = await newPage(undefined, { width: 360, height: 780 });
    await signIn(page, readKey);
    await page.locator(`[data-license-id="${licenseId}"] .usage-bar-text`).first().waitFor();
    await page.goto(`${app.baseUrl}/dashboard/licenses/${licenseId}`);
    await page.locator('table[aria-label="Thresholds"]').waitFor();
    await page.locator('table[aria-label="Overages"]').waitFor();
    await page.locator('.chart[data-drawn]').first().waitFor();
    for (const name of ['Add threshold', 'Edit', 'Remove', 'Approve', 'Waive']) expect([name, await page.getByRole('button', { name }).count()]).toEqual([name, 0]);
    const nav = await page.getByRole('navigation', { name: 'Main' }).textContent();
    expect(nav).not.toMatch(/API keys|Webhooks|Audit log|Operator/);
    // 360 px wide: nothing wider than the screen
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(360);
    await shot(page, '09-license-read-360px');
    await page.close();
  });

  it('shows an admin the operator view, and a tenant’s pages once one is picked', async () => {
    const page = await newPage();
    await signIn(page, app.adminKey);
    await page.getByRole('heading', { name: 'Operator' }).waitFor();
    const platform = await get('analytics.platform', {}, app.adminKey);
    await page.locator('.overview dd').first().waitFor();
    expect(await page.locator('.overview div', { hasText: 'Tenants' }).locator('dd').textContent()).toBe(new Intl.NumberFormat('en-US').format(platform.tenants));
    await page.getByRole('link', { name: 'Queue dashboard (/admin/queues)' }).waitFor();
    await page.getByLabel('Job', { exact: true }).selectOption('usage.thresholds.check');
    await page.getByRole('button', { name: 'Run now' }).click();
    await page.getByText(/Queued usage.thresholds.check/).waitFor();
    await shot(page, '10-operator');
    await page.getByLabel('Tenant', { exact: true }).selectOption(tenantId);
    await page.getByRole('link', { name: 'Licenses' }).click();
    await page.locator(`[data-license-id="${licenseId}"]`).waitFor();
    await page.close();
  });

  it('shows the API’s message when a call fails, not a blank page', async () => {
    const page = await newPage();
    await signIn(page, owner);
    await page.goto(`${app.baseUrl}/dashboard/licenses/00000000-0000-4000-8000-000000000000`);
    const alert = page.getByRole('alert').first();
    await alert.waitFor();
    expect(await alert.textContent()).toMatch(/Could not load the license \(404\)/);
    await page.close();
  });
});
