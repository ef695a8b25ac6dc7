import type { LicenseAuthority } from '../../../domain/licenses/licenses';
import type { Principal } from '../../../domain/api-keys/authenticator';

/** Billing fields of a license (plan, billing anchor, Stripe customer) are owner work; see LicenseAuthority. */
export function licenseAuthorityOf(principal: Principal): LicenseAuthority {
  return { mayChangeBilling: principal.role === 'owner' || principal.role === 'admin', mayChooseEnvironment: principal.role === 'admin' };
}
