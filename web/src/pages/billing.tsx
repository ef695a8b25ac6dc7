import { useQuery } from '@tanstack/react-query';
import { api } from '../api';
import { addDays, formatCount, formatDecimal, formatInstant } from '../format';
import { QueryView } from '../ui';

/** Billing: Stripe reporting health, the unreported backlog and reconciliation differences. */
export function BillingPage() {
  const health = useQuery({ queryKey: ['billing.health'], queryFn: () => api.billing.health.query({}) });
  const to = new Date().toISOString().slice(0, 10);
  const from = addDays(to, -30);
  const reconciliation = useQuery({ queryKey: ['billing.reconciliation', from, to], queryFn: () => api.billing.reconciliation.query({ from, to }) });
  return (
    <section aria-labelledby="billing-title">
      <h1 id="billing-title">Billing</h1>
      <QueryView query={health} label="billing health">
        {(h) =>
          !h.enabled ? (
            <p className="state empty">Stripe reporting is not enabled on this server (BILLING_ENCRYPTION_KEY unset).</p>
          ) : !h.connected ? (
            <p className="state empty">No Stripe account connected (billing.connect).</p>
          ) : (
            <dl className="overview">
              <div>
                <dt>Last report</dt>
                <dd>{formatInstant(h.lastReportAt)}</dd>
              </div>
              <div>
                <dt>Backlog (unreported)</dt>
                <dd>{formatCount(h.backlog)}</dd>
              </div>
              <div>
                <dt>Oldest unreported hour</dt>
                <dd>{formatInstant(h.oldestUnreportedWindow)}</dd>
              </div>
              <div>
                <dt>Failed sends</dt>
                <dd>{formatCount(h.failedCount)}</dd>
              </div>
              <div>
                <dt>Last reconciliation</dt>
                <dd>{formatInstant(h.lastReconciliationAt)}</dd>
              </div>
              <div>
                <dt>Open differences</dt>
                <dd>{formatCount(h.openDifferences)}</dd>
              </div>
            </dl>
          )
        }
      </QueryView>
      <h2>Reconciliation differences, last 30 days (UTC days)</h2>
      <QueryView query={reconciliation} label="reconciliation" empty={(d) => d.items.length === 0 && 'No differences between Stripe, the ledger and the rollups.'}>
        {(d) => (
          <table className="data" aria-label="Reconciliation differences">
            <thead>
              <tr>
                <th scope="col">Day</th>
                <th scope="col">License</th>
                <th scope="col">Stripe</th>
                <th scope="col">Ledger</th>
                <th scope="col">Rollups</th>
                <th scope="col">Difference</th>
                <th scope="col">Healed</th>
              </tr>
            </thead>
            <tbody>
              {d.items.map((x) => (
                <tr key={`${x.licenseId}-${x.meterId}-${x.day}`}>
                  <td>{x.day.slice(0, 10)}</td>
                  <td>
                    <code>{x.licenseId.slice(0, 8)}</code>
                  </td>
                  <td className="num">{formatDecimal(x.stripeUnits)}</td>
                  <td className="num">{formatDecimal(x.ledgerUnits)}</td>
                  <td className="num">{formatDecimal(x.rollupUnits)}</td>
                  <td className="num">{formatDecimal(x.difference)}</td>
                  <td>{x.healed ? 'yes' : 'no'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </QueryView>
    </section>
  );
}
