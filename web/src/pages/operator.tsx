import { useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, type Inputs } from '../api';
import { Chart } from '../chart';
import { formatCount, formatInstant, formatPercent } from '../format';
import { ErrorBox, QueryView } from '../ui';

type JobName = Inputs['jobs']['trigger']['name'];
/** The scheduled jobs an admin may run now; the type check below fails if the API gains one not listed. */
const JOBS = [
  'usage.aggregate.hourly',
  'usage.aggregate.daily',
  'usage.thresholds.check',
  'usage.forecast.daily',
  'usage.forecast.alerts',
  'usage.cleanup.weekly',
  'usage.partitions.maintain',
  'billing.reconcile',
] as const satisfies readonly JobName[];
const everyJobListed: Exclude<JobName, (typeof JOBS)[number]> extends never ? true : false = true;
void everyJobListed;

function Platform() {
  const q = useQuery({ queryKey: ['analytics.platform'], queryFn: () => api.analytics.platform.query({ days: 30, top: 10 }) });
  return (
    <QueryView query={q} label="the platform view">
      {(p) => (
        <>
          <dl className="overview">
            <div>
              <dt>Tenants</dt>
              <dd>{formatCount(p.tenants)}</dd>
            </div>
            <div>
              <dt>Licenses</dt>
              <dd>{formatCount(p.licenses.total)}</dd>
            </div>
            <div>
              <dt>Active licenses (30 days)</dt>
              <dd>{formatCount(p.licenses.activeLast30Days)}</dd>
            </div>
            <div>
              <dt>Events ({p.days} days)</dt>
              <dd>{formatCount(p.events)}</dd>
            </div>
            <div>
              <dt>Error rate</dt>
              <dd>{formatPercent(p.errorRate)}</dd>
            </div>
            <div>
              <dt>Sign-ups (active)</dt>
              <dd>
                {formatCount(p.signups.tenants)} ({formatCount(p.signups.activeLast30Days)})
              </dd>
            </div>
          </dl>
          <h3>Events per day (UTC)</h3>
          <Chart title={`Events per day over the last ${p.days} days, UTC`} labels={p.eventsPerDay.map((d) => d.date)} series={[{ label: 'Events', values: p.eventsPerDay.map((d) => d.events), stroke: '#2563eb' }]} renderKey="platform" height={200} />
          <div className="breakdowns">
            <div className="card">
              <h3>Top tenants</h3>
              <table className="data" aria-label="Top tenants by events">
                <tbody>
                  {p.topTenants.map((t) => (
                    <tr key={t.tenantId}>
                      <th scope="row">{t.name}</th>
                      <td className="num">{formatCount(t.events)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {p.topTenants.length === 0 && <p className="state empty">No events yet.</p>}
            </div>
            <div className="card">
              <h3>SDK versions</h3>
              <table className="data" aria-label="SDK versions by keys">
                <tbody>
                  {p.sdkVersions.map((s) => (
                    <tr key={s.sdkVersion ?? 'none'}>
                      <th scope="row">{s.sdkVersion ?? '(none)'}</th>
                      <td className="num">{formatCount(s.keys)} keys</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {p.sdkVersions.length === 0 && <p className="state empty">No SDK seen yet.</p>}
            </div>
          </div>
        </>
      )}
    </QueryView>
  );
}

function Jobs() {
  const queryClient = useQueryClient();
  const runs = useQuery({ queryKey: ['jobs.list'], queryFn: () => api.jobs.list.query({ limit: 25 }) });
  const [job, setJob] = useState<JobName>('usage.aggregate.hourly');
  const trigger = useMutation({ mutationFn: () => api.jobs.trigger.mutate({ name: job }), onSuccess: () => void queryClient.invalidateQueries({ queryKey: ['jobs.list'] }) });
  return (
    <section aria-labelledby="jobs-title">
      <h2 id="jobs-title">Jobs</h2>
      <form
        className="filters"
        aria-label="Run a job now"
        onSubmit={(e) => {
          e.preventDefault();
          trigger.mutate();
        }}
      >
        <label htmlFor="job-name">Job</label>
        <select id="job-name" value={job} onChange={(e) => setJob(e.target.value as JobName)}>
          {JOBS.map((j) => (
            <option key={j}>{j}</option>
          ))}
        </select>
        <button type="submit" disabled={trigger.isPending}>
          Run now
        </button>
        <a href="/admin/queues" target="_blank" rel="noopener">
          Queue dashboard (/admin/queues)
        </a>
      </form>
      {trigger.isSuccess && (
        <p role="status">
          Queued {trigger.data.name} for window {trigger.data.window} (job {trigger.data.jobId}).
        </p>
      )}
      {trigger.isError && <ErrorBox error={trigger.error} title="Could not run the job" />}
      <QueryView query={runs} label="job runs" empty={(d) => d.items.length === 0 && 'No job has run yet.'}>
        {(d) => (
          <table className="data" aria-label="Job runs">
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Window</th>
                <th scope="col">Status</th>
                <th scope="col">Started (your time)</th>
                <th scope="col">Duration</th>
                <th scope="col">Rows</th>
              </tr>
            </thead>
            <tbody>
              {d.items.map((r) => (
                <tr key={r.id} data-status={r.status}>
                  <td>{r.name}</td>
                  <td>{r.window ?? '—'}</td>
                  <td>
                    <span className={`badge job-${r.status}`}>{r.status}</span>
                    {r.error ? ` ${r.error}` : ''}
                  </td>
                  <td>{formatInstant(r.startedAt)}</td>
                  <td className="num">{r.durationMs === null ? '—' : `${formatCount(r.durationMs)} ms`}</td>
                  <td className="num">{formatCount(r.rowsTouched)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </QueryView>
    </section>
  );
}

/** Operator: the platform view and job runs, for admin keys. */
export function OperatorPage() {
  return (
    <section aria-labelledby="operator-title">
      <h1 id="operator-title">Operator</h1>
      <Platform />
      <Jobs />
    </section>
  );
}
