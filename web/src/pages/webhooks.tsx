import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, describeError } from '../api';
import { formatInstant } from '../format';
import { ConfirmButton, ErrorBox, QueryView, ShownOnce } from '../ui';

interface Attempt {
  at?: string;
  responseStatus?: number | null;
  error?: string | null;
}

function Deliveries({ endpointId }: { endpointId: string }) {
  const q = useQuery({ queryKey: ['webhooks.deliveries', endpointId], queryFn: () => api.webhooks.deliveries.query({ endpointId, limit: 20 }) });
  return (
    <QueryView query={q} label="deliveries" empty={(d) => d.items.length === 0 && 'Nothing delivered yet.'}>
      {(d) => (
        <table className="data" aria-label="Delivery log">
          <thead>
            <tr>
              <th scope="col">Event</th>
              <th scope="col">Status</th>
              <th scope="col">Attempts (response codes)</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {d.items.map((x) => {
              const attempts = Array.isArray(x.attemptLog) ? (x.attemptLog as Attempt[]) : [];
              return (
                <tr key={x.id}>
                  <td>{x.eventType}</td>
                  <td>
                    {x.status}
                    {x.lastError ? ` (${x.lastError})` : ''}
                  </td>
                  <td>
                    {x.attempts}: {attempts.map((a) => a.responseStatus ?? a.error ?? '—').join(', ') || (x.responseStatus ?? '—')}
                  </td>
                  <td>{formatInstant(x.createdAt)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </QueryView>
  );
}

/** Webhooks: endpoints, create (secret shown once), rotate, delivery log. Owner keys only. */
export function WebhooksPage() {
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ['webhooks.list'], queryFn: () => api.webhooks.list.query() });
  const [url, setUrl] = useState('');
  const [urlError, setUrlError] = useState<string | null>(null);
  const [secret, setSecret] = useState<{ title: string; secret: string } | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const refresh = () => void queryClient.invalidateQueries({ queryKey: ['webhooks.list'] });
  const create = useMutation({
    mutationFn: () => api.webhooks.create.mutate({ url: url.trim() }),
    onSuccess: (w) => {
      setSecret({ title: `Signing secret of ${w.url}`, secret: w.secret });
      setUrl('');
      refresh();
    },
    onError: (err) => {
      const d = describeError(err);
      setUrlError(d.fields.find((f) => f.path === 'url')?.message ?? d.message);
    },
  });
  const rotate = useMutation({
    mutationFn: (id: string) => api.webhooks.rotateSecret.mutate({ id }),
    onSuccess: (w) => {
      setSecret({ title: `New signing secret of ${w.url}`, secret: w.secret });
      refresh();
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setUrlError(null);
    create.mutate();
  };
  return (
    <section aria-labelledby="webhooks-title">
      <h1 id="webhooks-title">Webhooks</h1>
      {secret && <ShownOnce title={secret.title} secret={secret.secret} onDone={() => setSecret(null)} />}
      <form className="card filters" onSubmit={submit} aria-label="New endpoint" noValidate>
        <div className="field wide">
          <label htmlFor="webhook-url">Endpoint URL</label>
          <input id="webhook-url" type="url" value={url} onChange={(e) => setUrl(e.target.value)} aria-invalid={urlError ? true : undefined} aria-describedby={urlError ? 'webhook-url-error' : undefined} />
          {urlError && (
            <span className="field-error" id="webhook-url-error" role="alert">
              {urlError}
            </span>
          )}
        </div>
        <button type="submit" disabled={create.isPending}>
          Add endpoint
        </button>
      </form>
      {rotate.isError && <ErrorBox error={rotate.error} title="Could not rotate the secret" />}
      <QueryView query={list} label="endpoints" empty={(d) => d.items.length === 0 && 'No endpoints.'}>
        {(d) => (
          <ul className="cards">
            {d.items.map((w) => (
              <li key={w.id} className="card" data-endpoint-id={w.id}>
                <div className="row spread">
                  <code className="url">{w.url}</code>
                  <span className="badge">{w.enabled ? 'enabled' : 'disabled'}</span>
                </div>
                <p className="meta">
                  Events: {w.events.length ? w.events.join(', ') : 'all'} · {w.environment}
                  {w.rotating && w.previousSecretExpiresAt ? ` · previous secret valid until ${formatInstant(w.previousSecretExpiresAt)}` : ''}
                </p>
                <div className="row">
                  <ConfirmButton label="Rotate secret" confirmLabel="Rotate now" question="Make a new signing secret?" onConfirm={() => rotate.mutate(w.id)} />
                  <button type="button" aria-expanded={open === w.id} onClick={() => setOpen(open === w.id ? null : w.id)}>
                    {open === w.id ? 'Hide deliveries' : 'Show deliveries'}
                  </button>
                </div>
                {open === w.id && <Deliveries endpointId={w.id} />}
              </li>
            ))}
          </ul>
        )}
      </QueryView>
    </section>
  );
}
