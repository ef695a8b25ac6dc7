import { router } from './trpc';
import { apiKeysRouter } from './routers/api-keys/router';
import { auditLogsRouter } from './routers/audit-logs/router';
import { licensesRouter } from './routers/licenses/router';
import { tenantsRouter } from './routers/tenants/router';
import { usageRouter } from './routers/usage/router';
import { jobsRouter } from './routers/jobs/router';
import { thresholdsRouter } from './routers/thresholds/router';
import { alertsRouter } from './routers/alerts/router';
import { overagesRouter } from './routers/overages/router';
import { webhooksRouter } from './routers/webhooks/router';
import { analyticsRouter } from './routers/analytics/router';
import { forecastsRouter } from './routers/forecasts/router';
import { privacyRouter } from './routers/privacy/router';
import { billingRouter } from './routers/billing/router';
import { signupRouter } from './routers/signup/router';

export const appRouter = router({
  tenants: tenantsRouter,
  apiKeys: apiKeysRouter,
  licenses: licensesRouter,
  usage: usageRouter,
  auditLogs: auditLogsRouter,
  jobs: jobsRouter,
  thresholds: thresholdsRouter,
  alerts: alertsRouter,
  overages: overagesRouter,
  webhooks: webhooksRouter,
  analytics: analyticsRouter,
  forecasts: forecastsRouter,
  privacy: privacyRouter,
  billing: billingRouter,
  signup: signupRouter,
});

/** Import this type in a client: `createTRPCClient<AppRouter>(...)`. */
export type AppRouter = typeof appRouter;
