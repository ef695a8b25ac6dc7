/**
 * A small API billed through Tally: two billable routes and a free one.
 *   TALLY_API_KEY=tk_... npm run example:express        (from the repository root)
 * Callers name their license in `X-License-Id` (a stand-in for your own authentication, which
 * would map a customer's credentials to the Tally license you created for them).
 */
import express from 'express';
import { Tally } from '@tally/sdk';
import { tallyExpress } from '@tally/sdk/express';
import { workerFetch } from '@tally/sdk/node';

const apiKey = process.env.TALLY_API_KEY;
if (!apiKey) {
  console.error('set TALLY_API_KEY to a Tally key with the ingest (or member/owner) role');
  process.exit(1);
}

const tally = new Tally({
  apiKey,
  baseUrl: process.env.TALLY_URL ?? 'http://localhost:3000',
  environment: process.env.NODE_ENV ?? 'development',
  handleSignals: true, // flush what is buffered on Ctrl-C / SIGTERM
  fetch: workerFetch(), // batches are sent from a worker thread, not between this API's requests
  onError: (report) => console.error('tally:', report.kind, 'message' in report ? report.message : ''),
});

const app = express();
app.use(express.json());
app.use(
  tallyExpress({
    tally,
    billableRoutes: ['POST /v1/generate', 'GET /v1/search'],
    licenseId: (req) => req.header('x-license-id'),
    userId: (req) => req.header('x-user-id'),
    // /v1/generate bills the tokens it used (the handler says how many); everything else 1.
    usageType: (req) => (req.path === '/v1/generate' ? 'tokens' : 'api_call'),
    quantity: (_req, res) => res.locals.tokensUsed as number | undefined,
    enforce: true,
  }),
);

app.post('/v1/generate', (req, res) => {
  const prompt = String((req.body as { prompt?: unknown } | undefined)?.prompt ?? '');
  const text = prompt.split('').reverse().join('');
  res.locals.tokensUsed = Math.max(1, Math.ceil((prompt.length + text.length) / 4));
  res.status(201).json({ text, tokensUsed: res.locals.tokensUsed });
});

app.get('/v1/search', (req, res) => {
  res.json({ query: req.query.q ?? '', results: ['alpha', 'beta', 'gamma'] });
});

app.get('/v1/status', (_req, res) => {
  res.json({ status: 'ok' }); // free: not in billableRoutes
});

const port = Number(process.env.PORT ?? 4000);
app.listen(port, () => console.log(`example API on http://localhost:${port} (Tally at ${tally.options.baseUrl})`));
