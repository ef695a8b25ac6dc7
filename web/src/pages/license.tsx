import { useEffect, useMemo, useState, type FormEvent, type ReactNode } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, describeError, type Inputs, type Outputs } from '../api';
import type { Access } from '../app';
import { Chart, type ChartSeries } from '../chart';
import { addDays, formatCents, formatCount, formatDecimal, formatInstant, formatPercent, localDate } from '../format';
import { Link, useLocation, useQueryUpdater } from '../router';
import { ConfirmButton, Empty, ErrorBox, QueryView, UsageBar } from '../ui';

type Granularity = Inputs['analytics']['usage']['granularity'];
const GRANULARITIES: Granularity[] = ['hourly', 'daily', 'weekly', 'monthly'];
const MAX_DAYS: Record<Granularity, number> = { hourly: 92, daily: 1096, weekly: 1096, monthly: 1096 };
const PRESETS: [string, number][] = [
  ['7 days', 7],
  ['30 days', 30],
  ['90 days', 90],
  ['1 year', 365],
];
const DATE = /^\d{4}-\d{2}-\d{2}$/;

type License = Outputs['licenses']['get'];
type Forecast = Outputs['forecasts']['list']['items'][number];
type Threshold = Outputs['thresholds']['list']['items'][number];

/** A period label from the API (local wall time with offset) shortened to what the granularity needs. */
export function periodLabel(period: string, granularity: Granularity): string {
  if (granularity === 'hourly') return `${period.slice(5, 10)} ${period.slice(11, 16)}`;
  if (granularity === 'monthly') return period.slice(0, 7);
  return period.slice(0, 10);
}

function UsageChart({ license, granularity, from, to, usageType }: { license: License; granularity: Granularity; from: string; to: string; usageType?: string }) {
  const queryClient = useQueryClient();
  // no timezone: for one license the API reads its range in the license's zone (and this is the
  // question LicensePage may already have asked before the license arrived)
  const input = { licenseId: license.id, startDate: from, endDate: to, granularity, usageType };
  const usage = useQuery({ queryKey: ['analytics.usage', input], queryFn: () => api.analytics.usage.query(input) });
  // the other granularities of the same range, fetched ahead so a switch only redraws
  useEffect(() => {
    if (!usage.data) return;
    for (const g of GRANULARITIES) {
      if (g === granularity || (g === 'hourly' && dayCount(from, to) > 31)) continue;
      const other = { ...input, granularity: g };
      void queryClient.prefetchQuery({ queryKey: ['analytics.usage', other], queryFn: () => api.analytics.usage.query(other), staleTime: 15_000 });
    }
  }, [usage.data]);
  const labels = useMemo(() => usage.data?.timeSeries.map((p) => periodLabel(p.period, granularity)) ?? [], [usage.data, granularity]);
  const series = useMemo<ChartSeries[]>(() => [{ label: usageType ?? 'All usage types', values: usage.data?.timeSeries.map((p) => Number(p.quantity)) ?? [], stroke: '#2563eb', fill: 'rgba(37,99,235,0.08)' }], [usage.data, usageType]);
  const [showTable, setShowTable] = useState(false);
  return (
    <QueryView query={usage} label="usage">
      {(data) => (
        <>
          <dl className="overview">
            <div>
              <dt>Total</dt>
              <dd>{formatDecimal(data.overview.totalQuantity)}</dd>
            </div>
            <div>
              <dt>Events</dt>
              <dd>{formatCount(data.overview.eventCount)}</dd>
            </div>
            <div>
              <dt>Users</dt>
              <dd>{formatCount(data.overview.uniqueUsers)}</dd>
            </div>
            <div>
              <dt>Error rate</dt>
              <dd>{formatPercent(data.overview.errorRate)}</dd>
            </div>
          </dl>
          <Chart title={`Usage per ${granularity.replace('ly', '').replace('dai', 'day')} from ${from} to ${to}, ${license.timezone}`} labels={labels} series={series} renderKey={`${granularity}:${from}:${to}:${usageType ?? ''}:${data.timeSeries.length}`} />
          <details onToggle={(e) => setShowTable((e.target as HTMLDetailsElement).open)}>
            <summary>Show the data as a table</summary>
            {showTable && (
              <table className="data" aria-label="Usage per period">
                <thead>
                  <tr>
                    <th scope="col">Period ({license.timezone})</th>
                    <th scope="col">Quantity</th>
                    <th scope="col">Events</th>
                  </tr>
                </thead>
                <tbody>
                  {data.timeSeries.map((p) => (
                    <tr key={p.period} data-period={p.period} data-quantity={p.quantity}>
                      <td>{periodLabel(p.period, granularity)}</td>
                      <td className="num">{formatDecimal(p.quantity)}</td>
                      <td className="num">{formatCount(p.events)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </details>
        </>
      )}
    </QueryView>
  );
}

function dayCount(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000) + 1;
}

/** The current period, cumulative: actual so far, the forecast and its 80 % band to period end, and the limit. */
function ForecastChart({ license, forecast }: { license: License; forecast: Forecast }) {
  const start = localDate(new Date(forecast.periodStart), license.timezone);
  const end = addDays(localDate(new Date(forecast.periodEnd), license.timezone), -1);
  const today = localDate(new Date(), license.timezone);
  const last = today < end ? today : end;
  const input = { licenseId: license.id, usageType: forecast.usageType, startDate: start, endDate: last < start ? start : last, granularity: 'daily' as const, timezone: license.timezone };
  const usage = useQuery({ queryKey: ['analytics.usage', input], queryFn: () => api.analytics.usage.query(input) });
  const chart = useMemo(() => {
    if (!usage.data) return null;
    const days = dayCount(start, end);
    const labels = Array.from({ length: days }, (_, i) => addDays(start, i));
    const actual: (number | null)[] = new Array(days).fill(null);
    let sum = 0;
    usage.data.timeSeries.forEach((p, i) => {
      sum += Number(p.quantity);
      actual[i] = sum;
    });
    const lastIndex = usage.data.timeSeries.length - 1;
    const line = (target: number) => labels.map((_, i) => (i < lastIndex ? null : sum + ((target - sum) * (i - lastIndex)) / Math.max(1, days - 1 - lastIndex)));
    const series: ChartSeries[] = [
      { label: 'Used (cumulative)', values: actual, stroke: '#2563eb' },
      { label: 'Forecast', values: line(Number(forecast.predictedTotal)), stroke: '#7c3aed', dash: [6, 4] },
      { label: '80 % upper', values: line(Number(forecast.upper)), stroke: 'rgba(124,58,237,0.4)', width: 1 },
      { label: '80 % lower', values: line(Number(forecast.lower)), stroke: 'rgba(124,58,237,0.4)', width: 1 },
      { label: 'Limit', values: labels.map(() => Number(forecast.limit)), stroke: '#dc2626', dash: [2, 2] },
    ];
    return { labels, series };
  }, [usage.data, start, end, forecast]);
  if (usage.isPending) return null;
  if (usage.isError) return <ErrorBox error={usage.error} title="Could not load the period's usage" />;
  return (
    <figure className="forecast-figure">
      <Chart title={`${forecast.usageType}, ${forecast.periodType} period ${start} to ${end}: used, forecast with 80 % band, and limit`} labels={chart!.labels} series={chart!.series} band={[3, 4]} renderKey={`forecast:${forecast.id}`} height={220} />
      <figcaption>
        {forecast.usageType}, {forecast.periodType} period to {end}: predicted <strong>{formatDecimal(forecast.predictedTotal)}</strong> (80 %: {formatDecimal(forecast.lower)}–{formatDecimal(forecast.upper)}) against a limit of{' '}
        {formatDecimal(forecast.limit)}; {forecast.breachAt ? <span className="warn">limit reached on {forecast.breachAt}</span> : 'within the limit'}. Method {forecast.method}, as of {formatInstant(forecast.asOf, license.timezone)}.
      </figcaption>
    </figure>
  );
}

const BREAKDOWNS = [
  ['platform', 'Platform'],
  ['route', 'Route'],
  ['statusClass', 'Status class'],
  ['sdkVersion', 'SDK version'],
  ['usageType', 'Usage type'],
] as const;

function Breakdown({ license, by, title, from, to }: { license: License; by: (typeof BREAKDOWNS)[number][0]; title: string; from: string; to: string }) {
  const input = { licenseId: license.id, startDate: from, endDate: to, timezone: license.timezone, by, limit: 8 };
  const q = useQuery({ queryKey: ['analytics.breakdown', input], queryFn: () => api.analytics.breakdown.query(input) });
  return (
    <div className="card">
      <h3>{title}</h3>
      <QueryView query={q} label={title.toLowerCase()} empty={(d) => d.items.length === 0 && 'No events in this range.'}>
        {(d) => (
          <table className="data" aria-label={`Usage by ${title.toLowerCase()}`}>
            <tbody>
              {[...d.items, ...(d.other.keys ? [{ ...d.other, key: `${d.other.keys} others` }] : [])].map((item) => (
                <tr key={item.key ?? '(none)'}>
                  <th scope="row">{item.key ?? '(none)'}</th>
                  <td className="num">{formatDecimal(item.quantity)}</td>
                  <td className="num">{formatPercent(item.share)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </QueryView>
    </div>
  );
}

interface ThresholdDraft {
  usageType: string;
  periodType: 'daily' | 'weekly' | 'monthly';
  limitQuantity: string;
  gracePercentage: string;
  allowOverage: boolean;
  overageRateCents: string;
  warningLevels: string;
}

const emptyDraft: ThresholdDraft = { usageType: 'api_call', periodType: 'monthly', limitQuantity: '', gracePercentage: '0', allowOverage: false, overageRateCents: '0', warningLevels: '50, 80, 95' };

function ThresholdForm({ licenseId, editing, onDone }: { licenseId: string; editing: Threshold | null; onDone: () => void }) {
  const queryClient = useQueryClient();
  const [draft, setDraft] = useState<ThresholdDraft>(
    editing
      ? {
          usageType: editing.usageType,
          periodType: editing.periodType,
          limitQuantity: editing.limitQuantity,
          gracePercentage: editing.gracePercentage,
          allowOverage: editing.allowOverage,
          overageRateCents: String(editing.overageRateCents),
          warningLevels: editing.warningLevels.join(', '),
        }
      : emptyDraft,
  );
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const save = useMutation({
    mutationFn: async () => {
      const levels = draft.warningLevels.trim() === '' ? [] : draft.warningLevels.split(/[\s,]+/).filter(Boolean).map(Number);
      const rate = draft.overageRateCents.trim() === '' ? 0 : Number(draft.overageRateCents);
      const common = { limitQuantity: draft.limitQuantity.trim(), gracePercentage: draft.gracePercentage.trim() || '0', allowOverage: draft.allowOverage, overageRateCents: rate, warningLevels: levels };
      if (editing) return api.thresholds.update.mutate({ id: editing.id, ...common });
      return api.thresholds.create.mutate({ licenseId, usageType: draft.usageType.trim(), periodType: draft.periodType, ...common });
    },
    onSuccess: () => {
      void queryClient.invalidateQueries();
      onDone();
    },
    onError: (err) => {
      const { message, fields } = describeError(err);
      const byField: Record<string, string> = {};
      for (const f of fields) byField[f.path.split('.')[0] || 'form'] ??= f.message;
      setFieldErrors(byField);
      setFormError(fields.length ? 'Please correct the fields marked below.' : message);
    },
  });
  const field = (name: keyof ThresholdDraft, label: string, input: ReactNode, help?: string) => (
    <div className="field">
      <label htmlFor={`th-${name}`}>{label}</label>
      {input}
      {help && (
        <span className="help" id={`th-${name}-help`}>
          {help}
        </span>
      )}
      {fieldErrors[name] && (
        <span className="field-error" id={`th-${name}-error`} role="alert">
          {fieldErrors[name]}
        </span>
      )}
    </div>
  );
  const text = (name: Exclude<keyof ThresholdDraft, 'allowOverage' | 'periodType'>, inputMode: 'decimal' | 'numeric' | 'text' = 'text', disabled = false) => (
    <input
      id={`th-${name}`}
      name={name}
      inputMode={inputMode}
      value={draft[name]}
      disabled={disabled}
      onChange={(e) => setDraft({ ...draft, [name]: e.target.value })}
      aria-invalid={fieldErrors[name] ? true : undefined}
      aria-describedby={fieldErrors[name] ? `th-${name}-error` : undefined}
    />
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setFieldErrors({});
    setFormError(null);
    save.mutate();
  };
  return (
    <form className="card threshold-form" onSubmit={submit} aria-label={editing ? 'Edit threshold' : 'New threshold'} noValidate>
      <h3>{editing ? `Edit threshold (${editing.usageType}, ${editing.periodType})` : 'New threshold'}</h3>
      {formError && (
        <p className="field-error" role="alert">
          {formError}
        </p>
      )}
      <div className="grid">
        {field('usageType', 'Usage type', text('usageType', 'text', Boolean(editing)))}
        {field(
          'periodType',
          'Period',
          <select id="th-periodType" value={draft.periodType} disabled={Boolean(editing)} onChange={(e) => setDraft({ ...draft, periodType: e.target.value as ThresholdDraft['periodType'] })}>
            <option value="daily">daily</option>
            <option value="weekly">weekly</option>
            <option value="monthly">monthly</option>
          </select>,
        )}
        {field('limitQuantity', 'Limit', text('limitQuantity', 'decimal'), 'A decimal number, more than 0')}
        {field('gracePercentage', 'Grace (%)', text('gracePercentage', 'decimal'))}
        {field('overageRateCents', 'Overage rate (cents per unit)', text('overageRateCents', 'numeric'))}
        {field('warningLevels', 'Warning levels (%)', text('warningLevels'), 'Comma separated, 1 to 100')}
        <div className="field checkbox">
          <input id="th-allowOverage" type="checkbox" checked={draft.allowOverage} onChange={(e) => setDraft({ ...draft, allowOverage: e.target.checked })} />
          <label htmlFor="th-allowOverage">Allow overage (otherwise a hard limit, refused at ingestion)</label>
        </div>
      </div>
      <div className="row">
        <button type="submit" disabled={save.isPending}>
          {save.isPending ? 'Saving…' : editing ? 'Save threshold' : 'Create threshold'}
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function Thresholds({ license, access }: { license: License; access: Access }) {
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ['thresholds.list', license.id], queryFn: () => api.thresholds.list.query({ licenseId: license.id }) });
  const [editing, setEditing] = useState<Threshold | 'new' | null>(null);
  const remove = useMutation({ mutationFn: (id: string) => api.thresholds.remove.mutate({ id }), onSuccess: () => void queryClient.invalidateQueries() });
  return (
    <section aria-labelledby="thresholds-title">
      <h2 id="thresholds-title">Thresholds</h2>
      {remove.isError && <ErrorBox error={remove.error} title="Could not remove the threshold" />}
      <QueryView query={list} label="thresholds" empty={(d) => d.items.length === 0 && !editing && 'No thresholds: the plan’s limits apply.'}>
        {(d) => (
          <table className="data" aria-label="Thresholds">
            <thead>
              <tr>
                <th scope="col">Usage type</th>
                <th scope="col">Period</th>
                <th scope="col">Limit</th>
                <th scope="col">Grace</th>
                <th scope="col">Overage</th>
                <th scope="col">Levels</th>
                {access.canWrite && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {d.items.map((t) => (
                <tr key={t.id} data-threshold-id={t.id}>
                  <td>{t.usageType}</td>
                  <td>{t.periodType}</td>
                  <td className="num">{formatDecimal(t.limitQuantity)}</td>
                  <td className="num">{formatDecimal(t.gracePercentage)} %</td>
                  <td>{t.allowOverage ? `allowed, ${formatCents(t.overageRateCents)}/unit` : 'hard limit'}</td>
                  <td>{t.warningLevels.join(', ')}</td>
                  {access.canWrite && (
                    <td className="actions">
                      <button type="button" onClick={() => setEditing(t)}>
                        Edit
                      </button>
                      <ConfirmButton label="Remove" confirmLabel="Remove threshold" question={`Remove the ${t.usageType} ${t.periodType} threshold?`} onConfirm={() => remove.mutate(t.id)} />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </QueryView>
      {access.canWrite && editing === null && (
        <button type="button" onClick={() => setEditing('new')}>
          Add threshold
        </button>
      )}
      {access.canWrite && editing !== null && <ThresholdForm key={editing === 'new' ? 'new' : editing.id} licenseId={license.id} editing={editing === 'new' ? null : editing} onDone={() => setEditing(null)} />}
    </section>
  );
}

function Overages({ license, access }: { license: License; access: Access }) {
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ['overages.list', license.id], queryFn: () => api.overages.list.query({ licenseId: license.id, limit: 50 }) });
  const decide = useMutation({
    mutationFn: ({ id, decision }: { id: string; decision: 'approve' | 'waive' }) => (decision === 'approve' ? api.overages.approve.mutate({ id }) : api.overages.waive.mutate({ id })),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: ['overages.list'] }),
  });
  return (
    <section aria-labelledby="overages-title">
      <h2 id="overages-title">Overages</h2>
      {decide.isError && <ErrorBox error={decide.error} title="Could not decide the overage" />}
      <QueryView query={list} label="overages" empty={(d) => d.items.length === 0 && 'No overages.'}>
        {(d) => (
          <table className="data" aria-label="Overages">
            <thead>
              <tr>
                <th scope="col">Period ({license.timezone})</th>
                <th scope="col">Usage type</th>
                <th scope="col">Quantity</th>
                <th scope="col">Fee</th>
                <th scope="col">Status</th>
                {access.canWrite && <th scope="col">Decision</th>}
              </tr>
            </thead>
            <tbody>
              {d.items.map((o) => (
                <tr key={o.id} data-overage-id={o.id}>
                  <td>
                    {formatInstant(o.periodStart, license.timezone)} ({o.periodType})
                  </td>
                  <td>{o.usageType}</td>
                  <td className="num">{formatDecimal(o.quantity)}</td>
                  <td className="num">{formatCents(o.feeCents)}</td>
                  <td>
                    <span className={`badge overage-${o.status.toLowerCase()}`}>{o.status}</span>
                    {!o.final && o.status === 'DETECTED' ? ' (provisional)' : ''}
                  </td>
                  {access.canWrite && (
                    <td className="actions">
                      {o.status === 'DETECTED' && (
                        <>
                          <button type="button" disabled={decide.isPending} onClick={() => decide.mutate({ id: o.id, decision: 'approve' })}>
                            Approve
                          </button>
                          <ConfirmButton label="Waive" confirmLabel="Waive overage" question={`Waive ${formatCents(o.feeCents)}?`} onConfirm={() => decide.mutate({ id: o.id, decision: 'waive' })} />
                        </>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </QueryView>
    </section>
  );
}

function Alerts({ license }: { license: License }) {
  const list = useQuery({ queryKey: ['alerts.list', license.id], queryFn: () => api.alerts.list.query({ licenseId: license.id, limit: 50 }) });
  return (
    <section aria-labelledby="alerts-title">
      <h2 id="alerts-title">Alerts</h2>
      <QueryView query={list} label="alerts" empty={(d) => d.items.length === 0 && 'No alerts have fired.'}>
        {(d) => (
          <ol className="timeline">
            {d.items.map((a) => (
              <li key={a.id} data-level={a.level}>
                <time dateTime={a.createdAt}>{formatInstant(a.createdAt, license.timezone)}</time>{' '}
                <strong>{a.type === 'usage.threshold.exceeded' ? 'Exceeded' : `${a.level} % reached`}</strong>: {a.usageType}, {a.periodType}, {formatDecimal(a.used)} of {formatDecimal(a.limit)}
              </li>
            ))}
          </ol>
        )}
      </QueryView>
    </section>
  );
}

function Accuracy({ license }: { license: License }) {
  const q = useQuery({ queryKey: ['analytics.forecastAccuracy', license.id], queryFn: () => api.analytics.forecastAccuracy.query({ licenseId: license.id }) });
  return (
    <section aria-labelledby="accuracy-title">
      <h2 id="accuracy-title">Forecast accuracy</h2>
      <QueryView query={q} label="forecast accuracy" empty={(d) => d.periods === 0 && 'No finished period has been forecast yet.'}>
        {(d) => (
          <p>
            Mean absolute percentage error over {formatCount(d.periods)} finished periods: <strong>{d.mape === null ? '—' : `${formatDecimal(d.mape)} %`}</strong>
            {d.byPeriodType.map((g) => ` · ${g.periodType}: ${g.mape === null ? '—' : `${formatDecimal(g.mape)} %`} (${g.periods})`).join('')}
          </p>
        )}
      </QueryView>
    </section>
  );
}

/** License: usage over time, forecast, breakdowns, current periods, thresholds, alerts, overages. */
export function LicensePage({ id, access }: { id: string; access: Access }) {
  const { query } = useLocation();
  const update = useQueryUpdater();
  const license = useQuery({ queryKey: ['licenses.get', id], queryFn: () => api.licenses.get.query({ id }) });
  const current = useQuery({ queryKey: ['usage.current', id], queryFn: () => api.usage.current.query({ licenseId: id }) });
  const forecasts = useQuery({ queryKey: ['forecasts.list', id], queryFn: () => api.forecasts.list.query({ licenseId: id, current: true, limit: 20 }) });
  const g = query.get('g');
  const granularity: Granularity = GRANULARITIES.includes(g as Granularity) ? (g as Granularity) : 'daily';
  const usageType = query.get('type') || undefined;
  // A shared URL names its range: the chart's data is asked for at once, beside the license
  // (whose zone is needed only to pick a default range), not after it.
  const urlFrom = query.get('from') ?? '';
  const urlTo = query.get('to') ?? '';
  const early = DATE.test(urlFrom) && DATE.test(urlTo) && urlFrom <= urlTo && dayCount(urlFrom, urlTo) <= MAX_DAYS[granularity] ? { licenseId: id, startDate: urlFrom, endDate: urlTo, granularity, usageType } : null;
  useQuery({ queryKey: ['analytics.usage', early], queryFn: () => api.analytics.usage.query(early!), enabled: early !== null });
  return (
    <QueryView query={license} label="the license">
      {(l) => {
        const today = localDate(new Date(), l.timezone);
        let to = query.get('to') ?? '';
        let from = query.get('from') ?? '';
        if (!DATE.test(to)) to = today;
        if (!DATE.test(from)) from = addDays(to, granularity === 'hourly' ? -6 : -29);
        const rangeError = from > to ? 'The start is after the end.' : dayCount(from, to) > MAX_DAYS[granularity] ? `A ${granularity} range covers at most ${MAX_DAYS[granularity]} days.` : null;
        const types = [...new Set(current.data?.usage.map((u) => u.usageType) ?? [])];
        return (
          <article aria-labelledby="license-title">
            <p className="crumbs">
              <Link to="/licenses">Licenses</Link> /
            </p>
            <div className="row spread">
              <h1 id="license-title">{l.name}</h1>
              <span className={`badge status-${l.status.toLowerCase()}`}>{l.status}</span>
            </div>
            <p className="meta">
              Plan <strong>{l.plan}</strong> · {l.environment} · id <code>{l.id}</code>
              {l.externalId ? ` · external id ${l.externalId}` : ''}
            </p>
            <p className="tz-note" role="note">
              Dates and times on this page are in <strong>{l.timezone}</strong>, the license’s time zone.
            </p>

            <section aria-labelledby="usage-title">
              <h2 id="usage-title">Usage over time</h2>
              <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Chart range and granularity">
                <label htmlFor="granularity">Granularity</label>
                <select id="granularity" value={granularity} onChange={(e) => update({ g: e.target.value })}>
                  {GRANULARITIES.map((x) => (
                    <option key={x}>{x}</option>
                  ))}
                </select>
                <label htmlFor="from">From</label>
                <input id="from" type="date" value={from} onChange={(e) => DATE.test(e.target.value) && update({ from: e.target.value })} />
                <label htmlFor="to">To</label>
                <input id="to" type="date" value={to} onChange={(e) => DATE.test(e.target.value) && update({ to: e.target.value })} />
                <label htmlFor="usage-type">Usage type</label>
                <select id="usage-type" value={usageType ?? ''} onChange={(e) => update({ type: e.target.value || null })}>
                  <option value="">All</option>
                  {types.map((t) => (
                    <option key={t}>{t}</option>
                  ))}
                </select>
                <span className="presets" role="group" aria-label="Range presets">
                  {PRESETS.map(([label, days]) => (
                    <button key={label} type="button" onClick={() => update({ from: addDays(today, -(days - 1)), to: today, g: days > 92 && granularity === 'hourly' ? 'daily' : granularity })}>
                      {label}
                    </button>
                  ))}
                </span>
              </form>
              {rangeError ? <p className="field-error" role="alert">{rangeError}</p> : <UsageChart license={l} granularity={granularity} from={from} to={to} usageType={usageType} />}
            </section>

            <section aria-labelledby="forecast-title">
              <h2 id="forecast-title">Forecast to period end</h2>
              <QueryView query={forecasts} label="forecasts" empty={(d) => d.items.length === 0 && 'No forecast yet: forecasts are made daily (03:00 UTC) for limited usage types.'}>
                {(d) => (
                  <>
                    {[...d.items].sort((a, b) => (a.periodType === "daily" ? 1 : 0) - (b.periodType === "daily" ? 1 : 0)).slice(0, 3).map((f) => (
                      <ForecastChart key={f.id} license={l} forecast={f} />
                    ))}
                  </>
                )}
              </QueryView>
            </section>

            <section aria-labelledby="current-title">
              <h2 id="current-title">Current periods</h2>
              <QueryView query={current} label="current usage" empty={(d) => d.usage.length === 0 && 'No usage in the current periods.'}>
                {(d) => (
                  <div className="current">
                    {d.usage.map((u) => (
                      <div key={`${u.usageType}-${u.period}`} className="card current-period" data-usage-type={u.usageType} data-period={u.period}>
                        <UsageBar label={`${u.usageType}, ${u.period}`} used={u.used} limit={u.limit} />
                        <p className="meta">
                          {formatInstant(u.periodStart, l.timezone)} – resets {formatInstant(u.resetAt, l.timezone)}
                          {u.remaining !== null ? ` · ${formatDecimal(u.remaining)} remaining` : ''}
                        </p>
                      </div>
                    ))}
                  </div>
                )}
              </QueryView>
            </section>

            <section aria-labelledby="breakdowns-title">
              <h2 id="breakdowns-title">Breakdowns</h2>
              {rangeError ? (
                <Empty>Pick a valid range above.</Empty>
              ) : (
                <div className="breakdowns">
                  {BREAKDOWNS.map(([by, title]) => (
                    <Breakdown key={by} license={l} by={by} title={title} from={from} to={to} />
                  ))}
                </div>
              )}
            </section>

            <Thresholds license={l} access={access} />
            <Alerts license={l} />
            <Overages license={l} access={access} />
            <Accuracy license={l} />
          </article>
        );
      }}
    </QueryView>
  );
}
