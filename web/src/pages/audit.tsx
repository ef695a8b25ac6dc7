import { useQuery } from '@tanstack/react-query';
import { api } from '../api';
import { formatInstant } from '../format';
import { useLocation, useQueryUpdater } from '../router';
import { Pager, QueryView } from '../ui';

const OUTCOMES = ['success', 'denied', 'refused'] as const;
type Outcome = (typeof OUTCOMES)[number];

/** Audit log: filterable by action, outcome and time, paged; the filters are in the URL. */
export function AuditPage() {
  const { query } = useLocation();
  const update = useQueryUpdater();
  const action = query.get('action') || undefined;
  const o = query.get('outcome');
  const outcome = OUTCOMES.includes(o as Outcome) ? (o as Outcome) : undefined;
  const fromDate = query.get('from') || '';
  const toDate = query.get('to') || '';
  const cursors = (query.get('after') ?? '').split(',').filter(Boolean);
  const input = {
    action,
    outcome,
    from: /^\d{4}-\d{2}-\d{2}$/.test(fromDate) ? new Date(`${fromDate}T00:00:00`).toISOString() : undefined,
    to: /^\d{4}-\d{2}-\d{2}$/.test(toDate) ? new Date(`${toDate}T23:59:59.999`).toISOString() : undefined,
    cursor: cursors.at(-1),
    limit: 25,
  };
  const list = useQuery({ queryKey: ['auditLogs.list', input], queryFn: () => api.auditLogs.list.query(input) });
  return (
    <section aria-labelledby="audit-title">
      <h1 id="audit-title">Audit log</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()} aria-label="Filter the audit log">
        <label htmlFor="audit-action">Action</label>
        <input id="audit-action" placeholder="e.g. apiKeys.revoke" defaultValue={action ?? ''} onBlur={(e) => update({ action: e.target.value.trim() || null, after: null })} />
        <label htmlFor="audit-outcome">Outcome</label>
        <select id="audit-outcome" value={outcome ?? ''} onChange={(e) => update({ outcome: e.target.value || null, after: null })}>
          <option value="">Any</option>
          {OUTCOMES.map((x) => (
            <option key={x}>{x}</option>
          ))}
        </select>
        <label htmlFor="audit-from">From (your time)</label>
        <input id="audit-from" type="date" value={fromDate} onChange={(e) => update({ from: e.target.value || null, after: null })} />
        <label htmlFor="audit-to">To</label>
        <input id="audit-to" type="date" value={toDate} onChange={(e) => update({ to: e.target.value || null, after: null })} />
      </form>
      <QueryView query={list} label="the audit log" empty={(d) => d.items.length === 0 && 'No entries match.'}>
        {(d) => (
          <>
            <table className="data" aria-label="Audit log entries">
              <thead>
                <tr>
                  <th scope="col">When (your time)</th>
                  <th scope="col">Action</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Key</th>
                  <th scope="col">Target</th>
                  <th scope="col">Address</th>
                </tr>
              </thead>
              <tbody>
                {d.items.map((x) => (
                  <tr key={x.id}>
                    <td>{formatInstant(x.createdAt)}</td>
                    <td>{x.action}</td>
                    <td>{x.outcome}</td>
                    <td>{x.actorPrefix ? <code>{x.actorPrefix}</code> : '—'}</td>
                    <td>{x.targetType ? `${x.targetType} ${x.targetId ?? ''}` : '—'}</td>
                    <td>{x.ip ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <Pager hasPrevious={cursors.length > 0} next={d.nextCursor} onPrevious={() => update({ after: cursors.slice(0, -1).join(',') || null })} onNext={(c) => update({ after: [...cursors, c].join(',') })} />
          </>
        )}
      </QueryView>
    </section>
  );
}
