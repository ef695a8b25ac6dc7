import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, describeError, type Inputs } from '../api';
import { formatCount, formatInstant } from '../format';
import { ConfirmButton, ErrorBox, QueryView, ShownOnce } from '../ui';

type KeyRole = Inputs['apiKeys']['create']['role'];
const ROLES: KeyRole[] = ['read', 'member', 'ingest', 'owner'];

/** API keys: create (shown once), list with last use, revoke with confirmation. Owner keys only. */
export function ApiKeysPage() {
  const queryClient = useQueryClient();
  const [includeRevoked, setIncludeRevoked] = useState(false);
  const list = useQuery({ queryKey: ['apiKeys.list', includeRevoked], queryFn: () => api.apiKeys.list.query({ includeRevoked }) });
  const [name, setName] = useState('');
  const [role, setRole] = useState<KeyRole>('read');
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null);
  const [nameError, setNameError] = useState<string | null>(null);
  const create = useMutation({
    mutationFn: () => api.apiKeys.create.mutate({ name: name.trim(), role }),
    onSuccess: (k) => {
      setCreated({ name: k.name, key: k.key });
      setName('');
      void queryClient.invalidateQueries({ queryKey: ['apiKeys.list'] });
    },
    onError: (err) => setNameError(describeError(err).fields.find((f) => f.path === 'name')?.message ?? null),
  });
  const revoke = useMutation({ mutationFn: (id: string) => api.apiKeys.revoke.mutate({ id }), onSuccess: () => void queryClient.invalidateQueries({ queryKey: ['apiKeys.list'] }) });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setNameError(null);
    create.mutate();
  };
  return (
    <section aria-labelledby="keys-title">
      <h1 id="keys-title">API keys</h1>
      {created && <ShownOnce title={`New key “${created.name}”`} secret={created.key} onDone={() => setCreated(null)} />}
      <form className="card filters" onSubmit={submit} aria-label="New API key" noValidate>
        <div className="field">
          <label htmlFor="key-name">Name</label>
          <input id="key-name" value={name} onChange={(e) => setName(e.target.value)} aria-invalid={nameError ? true : undefined} aria-describedby={nameError ? 'key-name-error' : undefined} />
          {nameError && (
            <span className="field-error" id="key-name-error" role="alert">
              {nameError}
            </span>
          )}
        </div>
        <div className="field">
          <label htmlFor="key-role">Role</label>
          <select id="key-role" value={role} onChange={(e) => setRole(e.target.value as KeyRole)}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </div>
        <button type="submit" disabled={create.isPending}>
          Create key
        </button>
      </form>
      {create.isError && !nameError && <ErrorBox error={create.error} title="Could not create the key" />}
      {revoke.isError && <ErrorBox error={revoke.error} title="Could not revoke the key" />}
      <div className="field checkbox">
        <input id="include-revoked" type="checkbox" checked={includeRevoked} onChange={(e) => setIncludeRevoked(e.target.checked)} />
        <label htmlFor="include-revoked">Show revoked keys</label>
      </div>
      <QueryView query={list} label="keys" empty={(d) => d.items.length === 0 && 'No keys.'}>
        {(d) => (
          <table className="data" aria-label="API keys">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Prefix</th>
                <th scope="col">Role</th>
                <th scope="col">Last used</th>
                <th scope="col">Requests</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {d.items.map((k) => (
                <tr key={k.id} data-key-id={k.id}>
                  <td>{k.name}</td>
                  <td>
                    <code>{k.prefix}</code>
                  </td>
                  <td>{k.role}</td>
                  <td>{k.lastUsedAt ? formatInstant(k.lastUsedAt) : 'never'}</td>
                  <td className="num">{formatCount(k.requestCount)}</td>
                  <td className="actions">
                    {k.revokedAt ? (
                      `revoked ${formatInstant(k.revokedAt)}`
                    ) : (
                      <ConfirmButton label="Revoke" confirmLabel="Revoke key" question={`Revoke “${k.name}”? Requests with it fail at once.`} onConfirm={() => revoke.mutate(k.id)} />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </QueryView>
    </section>
  );
}
