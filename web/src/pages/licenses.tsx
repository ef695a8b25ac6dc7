import { useQuery } from '@tanstack/react-query';
import { api, type Outputs } from '../api';
import { formatDecimal } from '../format';
import { Link, useLocation, useQueryUpdater } from '../router';
import { Empty, ErrorBox, Loading, Pager, QueryView, UsageBar } from '../ui';

type License = Outputs['licenses']['list']['items'][number];
type Forecast = Outputs['forecasts']['list']['items'][number];

const STATUSES = ['ACTIVE', 'SUSPENDED', 'EXPIRED', 'REVOKED'] as const;
type Status = (typeof STATUSES)[number];

function LicenseRow({ license, forecasts }: { license: License; forecasts: Forecast[] }) {
  const current = useQuery({ queryKey: ['usage.current', license.id], queryFn: () => api.usage.current.query({ licenseId: license.id }) });
  const limited = current.data?.usage.filter((u) => u.limit !== null) ?? [];
  return (
    <li className="card license-card" data-license-id={license.id}>
      <div className="row spread">
        <h3>
          <Link to={`/licenses/${license.id}`}>{license.name}</Link>
        </h3>
        <span className={`badge status-${license.status.toLowerCase()}`}>{license.status}</span>
      </div>
      <p className="meta">
        Plan <strong>{license.plan}</strong> · {license.timezone}
        {license.externalId ? ` · ${license.externalId}` : ''}
      </p>
      {current.isPending ? (
        <Loading label="Loading usage" />
      ) : current.isError ? (
        <ErrorBox error={current.error} title="Could not load usage" />
      ) : limited.length === 0 ? (
        <p className="meta">No limited period (unlimited plan, no thresholds).</p>
      ) : (
        limited.map((u) => <UsageBar key={`${u.usageType}-${u.period}`} label={`${u.usageType}, ${u.period}`} used={u.used} limit={u.limit} />)
      )}
      {forecasts.map((f) => (
        <p key={f.id} className="forecast">
          Forecast ({f.usageType}, {f.periodType}): <strong>{formatDecimal(f.predictedTotal)}</strong> by period end (80 %: {formatDecimal(f.lower)}–{formatDecimal(f.upper)}),{' '}
          {f.breachAt ? <span className="warn">limit reached on {f.breachAt}</span> : 'within the limit'}
        </p>
      ))}
    </li>
  );
}

/** Licenses: a searchable, paged list with usage against each limited period and the forecast. */
export function LicensesPage() {
  const { query } = useLocation();
  const update = useQueryUpdater();
  const q = query.get('q') ?? '';
  const statusParam = query.get('status');
  const status = STATUSES.includes(statusParam as Status) ? (statusParam as Status) : undefined;
  const cursors = (query.get('after') ?? '').split(',').filter(Boolean);
  const cursor = cursors.at(-1);
  const list = useQuery({ queryKey: ['licenses.list', status, cursor], queryFn: () => api.licenses.list.query({ limit: 20, status, cursor }) });
  const forecasts = useQuery({ queryKey: ['forecasts.list', 'current'], queryFn: () => api.forecasts.list.query({ current: true, limit: 100 }) });
  const needle = q.trim().toLowerCase();
  return (
    <section aria-labelledby="licenses-title">
      <h1 id="licenses-title">Licenses</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label htmlFor="license-search">Search by name, external id or id</label>
        <input id="license-search" type="search" value={q} onChange={(e) => update({ q: e.target.value }, { replace: true })} />
        <label htmlFor="license-status">Status</label>
        <select id="license-status" value={status ?? ''} onChange={(e) => update({ status: e.target.value || null, after: null })}>
          <option value="">Any</option>
          {STATUSES.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </form>
      <QueryView query={list} label="licenses" empty={(d) => d.items.length === 0 && 'No licenses yet. Create one with licenses.create (see the README).'}>
        {(data) => {
          const shown = needle ? data.items.filter((l) => [l.name, l.externalId ?? '', l.id].some((v) => v.toLowerCase().includes(needle))) : data.items;
          return (
            <>
              {needle && <p className="meta">Searching the {data.items.length} licenses of this page.</p>}
              {shown.length === 0 ? (
                <Empty>No license on this page matches “{q}”.</Empty>
              ) : (
                <ul className="cards">
                  {shown.map((l) => (
                    <LicenseRow key={l.id} license={l} forecasts={(forecasts.data?.items ?? []).filter((f) => f.licenseId === l.id)} />
                  ))}
                </ul>
              )}
              <Pager
                hasPrevious={cursors.length > 0}
                next={data.nextCursor}
                onPrevious={() => update({ after: cursors.slice(0, -1).join(',') || null })}
                onNext={(c) => update({ after: [...cursors, c].join(',') })}
              />
            </>
          );
        }}
      </QueryView>
    </section>
  );
}
