import type { Env } from '../../env';
import { AppError } from '../../lib/errors';
import { checkOutboundUrl, outboundPolicy, type OutboundPolicy } from '../../lib/net-guard';

type PolicyEnv = Pick<Env, 'WEBHOOK_ALLOWED_HOSTS' | 'WEBHOOK_ALLOW_PRIVATE'>;

const policies = new WeakMap<PolicyEnv, OutboundPolicy>();

/** The address rules for webhook receivers under this configuration (built once per env). */
export function webhookPolicy(env: PolicyEnv): OutboundPolicy {
  let policy = policies.get(env);
  if (!policy) {
    policy = outboundPolicy({ allowedHosts: env.WEBHOOK_ALLOWED_HOSTS, allowPrivate: env.WEBHOOK_ALLOW_PRIVATE });
    policies.set(env, policy);
  }
  return policy;
}

/**
 * A receiver URL as written must be allowed before it is saved: a 400 naming `url` and why.
 * Where a host name resolves is checked again on every delivery, at connect time.
 */
export function assertReceiverUrl(url: string, policy: OutboundPolicy): void {
  const check = checkOutboundUrl(url, policy);
  if (!check.ok) {
    const message = `url ${check.reason}`;
    throw new AppError('BAD_REQUEST', message, undefined, { issues: [{ path: ['url'], message, code: 'custom' }] });
  }
}
