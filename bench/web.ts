/**
 * Web console benchmark (issue 15): `npm run bench -- web`, in the same headless Chromium the
 * browser tests drive (Debian's chromium through playwright-core), against the API as `npm start`
 * runs it (which builds the console's bundle when it is missing or stale).
 *
 *  (1) JavaScript shipped for the first page (the sign-in page at /dashboard/): every script the
 *      browser loads, gzipped (level 9, as a server or CDN would send it). Target ≤ 250 KB.
 *  (2) License page usable: from navigation to the usage chart drawn (a `performance.mark` the
 *      chart sets when uPlot has drawn it), with a year of daily data (365 points), in a fresh
 *      browser context each time (no HTTP cache). Target ≤ 1 s, median of BENCH_WEB_LOADS (5).
 *  (3) Granularity switch: from the select's change to the chart redrawn with the new data
 *      (weekly, monthly, daily, ...; BENCH_WEB_SWITCHES of them, 9). Target ≤ 100 ms, median and max.
 */
import { gzipSync } from 'node:zlib';
import pg from 'pg';
import type { Page } from 'playwright-core';
import { launchChromium } from '../tests/helpers/browser';
import { type BenchContext, type BenchReport, type Figure, type PhaseReport, createTenantWithLicense, intFromEnv, measurePhase, percentile, round } from './lib';

const DAY = 86_400_000;

export interface WebBenchConfig {
  loads: number;
  switches: number;
}

export function webConfigFromEnv(): WebBenchConfig {
  return { loads: intFromEnv('BENCH_WEB_LOADS', 5), switches: intFromEnv('BENCH_WEB_SWITCHES', 9) };
}

/** Milliseconds from navigation (the page's time origin) to the chart-drawn mark whose key starts with `prefix`. */
async function markTime(page: Page, prefix: string, after = 0): Promise<number> {
  const handle = await page.waitForFunction(
    ([p, t]) => {
      const mark = performance.getEntriesByType('mark').find((m) => m.name.startsWith(`chart-drawn:${p}`) && m.startTime >= (t as number));
      return mark ? mark.startTime : false;
    },
    [prefix, after] as const,
    { timeout: 30_000, polling: 'raf' },
  );
  return (await handle.jsonValue()) as number;
}

export async function runWebBench(ctx: BenchContext, config: WebBenchConfig): Promise<BenchReport> {
  const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 2 });
  const browser = await launchChromium();
  const phases: PhaseReport[] = [];
  const figures: Figure[] = [];
  const base = ctx.server.baseUrl;
  try {
    const tenant = await createTenantWithLicense(ctx.server, `web-${ctx.runId}`, 'enterprise');
    // A year of final daily rollups for one license (UTC), as the daily job leaves them.
    const today = Math.floor(Date.now() / DAY) * DAY;
    const yearStart = today - 365 * DAY;
    await pool.query(
      `INSERT INTO usage_rollups_daily (tenant_id, license_id, usage_type, date, timezone, quantity, event_count, max_quantity,
                                        distinct_users, error_count, duration_ms_sum)
       SELECT $1, $2, 'api_call', d::date, 'UTC', (100 + (extract(doy FROM d) * 7)::int % 50)::numeric + 0.25, 100, 5, 10, 2, 1000
         FROM generate_series($3::timestamptz, $4::timestamptz, interval '1 day') AS d
       ON CONFLICT DO NOTHING`,
      [tenant.tenantId, tenant.licenseId, new Date(yearStart), new Date(today - DAY)],
    );
    await pool.query(
      `INSERT INTO rollup_windows (kind, start) SELECT 'daily', d FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 day') AS d ON CONFLICT DO NOTHING`,
      [new Date(yearStart), new Date(today - DAY)],
    );
    const from = new Date(yearStart).toISOString().slice(0, 10);
    const to = new Date(today - DAY).toISOString().slice(0, 10);
    const licenseUrl = `${base}/dashboard/licenses/${tenant.licenseId}?g=daily&from=${from}&to=${to}`;
    const signedIn = `window.sessionStorage.setItem('tally.console.key', ${JSON.stringify(tenant.ownerKey)})`;

    // (1) first page
    const first = await measurePhase(ctx.server, async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      const scripts: Promise<Buffer>[] = [];
      page.on('response', (r) => {
        if (r.request().resourceType() === 'script') scripts.push(r.body());
      });
      await page.goto(`${base}/dashboard/`, { waitUntil: 'networkidle' });
      await page.getByLabel('API key').waitFor();
      const bodies = await Promise.all(scripts);
      await context.close();
      return { files: bodies.length, raw: bodies.reduce((s, b) => s + b.length, 0), gzip: bodies.reduce((s, b) => s + gzipSync(b, { level: 9 }).length, 0) };
    });
    phases.push({ name: 'first page', resources: first.resources, metrics: first.result, errors: first.result.files ? [] : ['no script loaded'] });
    figures.push({ what: `JS for the first page, gzipped (${first.result.files} file, ${round(first.result.raw / 1024, 0)} KB raw)`, value: round(first.result.gzip / 1024, 1), unit: 'KB', digits: 1, target: { value: 250, better: 'lower' } });

    // (2) license page, a year of daily data, to chart drawn
    const loads = await measurePhase(ctx.server, async () => {
      const times: number[] = [];
      for (let i = 0; i < config.loads; i++) {
        const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
        await context.addInitScript(signedIn);
        const page = await context.newPage();
        await page.goto(licenseUrl);
        times.push(await markTime(page, `daily:${from}:${to}:`));
        const points = Number(await page.locator('.chart').first().getAttribute('data-points'));
        if (points !== 365) throw new Error(`the chart has ${points} points, not 365`);
        await context.close();
      }
      return times;
    });
    phases.push({ name: 'license page to chart', resources: loads.resources, metrics: { ms: loads.result.map((t) => round(t, 1)) }, errors: [] });
    figures.push({ what: 'license page, navigation to chart drawn (365 daily points), median', value: round(percentile(loads.result, 50), 0), unit: 'ms', target: { value: 1000, better: 'lower' } });
    figures.push({ what: 'license page, navigation to chart drawn, slowest', value: round(Math.max(...loads.result), 0), unit: 'ms' });

    // (3) granularity switches on one loaded page
    const switches = await measurePhase(ctx.server, async () => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      await context.addInitScript(signedIn);
      const page = await context.newPage();
      await page.goto(licenseUrl);
      await markTime(page, `daily:${from}:${to}:`);
      // the page fetches the other granularities of the range ahead; a switch then only redraws
      await page.waitForLoadState('networkidle');
      const order = ['weekly', 'monthly', 'daily'];
      const times: number[] = [];
      for (let i = 0; i < config.switches; i++) {
        const g = order[i % order.length]!;
        const started = (await page.evaluate(`(() => {
          const t = performance.now();
          const s = document.getElementById('granularity');
          s.value = ${JSON.stringify(g)};
          s.dispatchEvent(new Event('change', { bubbles: true }));
          return t;
        })()`)) as number;
        times.push((await markTime(page, `${g}:${from}:${to}:`, started)) - started);
      }
      await context.close();
      return times;
    });
    phases.push({ name: 'granularity switches', resources: switches.resources, metrics: { ms: switches.result.map((t) => round(t, 1)) }, errors: [] });
    figures.push({ what: 'granularity switch to chart redrawn, median', value: round(percentile(switches.result, 50), 1), unit: 'ms', digits: 1, target: { value: 100, better: 'lower' } });
    figures.push({ what: 'granularity switch to chart redrawn, slowest', value: round(Math.max(...switches.result), 1), unit: 'ms', digits: 1 });
    return { name: 'web', figures, phases, config: { ...config, chromium: browser.version() } };
  } finally {
    await browser.close();
    await pool.end();
  }
}
