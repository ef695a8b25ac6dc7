import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, describeError, session, type Outputs, type Role } from './api';
import { Link, navigate, useLocation } from './router';
import { ErrorBox, Loading } from './ui';
import { LicensesPage } from './pages/licenses';
import { LicensePage } from './pages/license';
import { ApiKeysPage } from './pages/api-keys';
import { WebhooksPage } from './pages/webhooks';
import { AuditPage } from './pages/audit';
import { OperatorPage } from './pages/operator';
import { BillingPage } from './pages/billing';

export type Me = Outputs['apiKeys']['me'];

/** What a role may see and do in the console; the API checks it again on every call. */
export interface Access {
  role: Role;
  me: Me;
  /** Writes of tenant data: thresholds, overages, keys, webhooks (owner, or an admin acting for a tenant). */
  canWrite: boolean;
  /** Owner-only pages: keys, webhooks, audit log. */
  isOwner: boolean;
  isAdmin: boolean;
  /** Whether tenant pages can be shown: a tenant key, or an admin that picked a tenant. */
  hasTenant: boolean;
}

function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    session.signIn(key.trim());
    try {
      await api.apiKeys.me.query();
      onSignedIn();
    } catch (err) {
      session.signOut();
      setError(describeError(err).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <h1>Tally console</h1>
      <form onSubmit={(e) => void submit(e)} aria-describedby="signin-help">
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autoComplete="off"
          spellCheck={false}
          required
          value={key}
          onChange={(e) => setKey(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? 'signin-error' : undefined}
        />
        <p id="signin-help" className="help">
          Paste a key (tk_live_… or tk_test_…). It stays in this tab only (session storage) and is sent to this server alone.
        </p>
        {error && (
          <p id="signin-error" className="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy || !key.trim()}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

function TenantPicker({ onPick }: { onPick: () => void }) {
  const tenants = useQuery({ queryKey: ['tenants.list'], queryFn: () => api.tenants.list.query({ limit: 100 }) });
  return (
    <div className="tenant-picker">
      <label htmlFor="tenant">Tenant</label>
      {tenants.isPending ? (
        <Loading label="Loading tenants" />
      ) : tenants.isError ? (
        <ErrorBox error={tenants.error} />
      ) : (
        <select
          id="tenant"
          value={session.tenantId ?? ''}
          onChange={(e) => {
            session.setTenant(e.target.value || null);
            onPick();
          }}
        >
          <option value="">Platform (no tenant)</option>
          {tenants.data.items.map((t) => (
            <option key={t.id} value={t.id}>
              {t.name} ({t.slug})
            </option>
          ))}
        </select>
      )}
    </div>
  );
}

function Routes({ access }: { access: Access }) {
  const { path } = useLocation();
  const license = /^\/licenses\/([0-9a-f-]{36})$/.exec(path);
  const needTenant = <p className="state empty">Pick a tenant above to see its licenses, keys and webhooks.</p>;
  if (path === '/operator') return access.isAdmin ? <OperatorPage /> : <p className="state error" role="alert">The operator view needs an admin key.</p>;
  if (!access.hasTenant) return access.isAdmin && path === '/' ? <OperatorPage /> : needTenant;
  if (access.role === 'ingest') return <p className="state empty">This is an ingest key: it sends events and reads nothing. Sign in with a read, member or owner key.</p>;
  if (license) return <LicensePage id={license[1]!} access={access} />;
  if (path === '/' || path === '/licenses') return <LicensesPage />;
  if (path === '/api-keys' && access.isOwner) return <ApiKeysPage />;
  if (path === '/webhooks' && access.isOwner) return <WebhooksPage />;
  if (path === '/audit' && access.isOwner) return <AuditPage />;
  if (path === '/billing') return <BillingPage />;
  return <p className="state error" role="alert">No such page here, or not for this key.</p>;
}

export function App() {
  const [signedIn, setSignedIn] = useState(Boolean(session.key));
  const [tenantVersion, setTenantVersion] = useState(0);
  const queryClient = useQueryClient();
  const { path } = useLocation();
  const mainRef = useRef<HTMLElement>(null);
  const me = useQuery({ queryKey: ['apiKeys.me', tenantVersion], queryFn: () => api.apiKeys.me.query(), enabled: signedIn });

  // focus moves to the page's content after navigation, for keyboard and screen-reader users
  useEffect(() => {
    mainRef.current?.focus();
  }, [path]);

  if (!signedIn) return <SignIn onSignedIn={() => setSignedIn(true)} />;
  const signOut = () => {
    session.signOut();
    queryClient.clear();
    setSignedIn(false);
    navigate('/');
  };
  if (me.isPending) return <Loading label="Signing in" />;
  if (me.isError)
    return (
      <main className="signin">
        <ErrorBox error={me.error} title="Could not sign in" />
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </main>
    );
  const role = me.data.role;
  const isAdmin = role === 'admin';
  const access: Access = {
    role,
    me: me.data,
    isAdmin,
    canWrite: role === 'owner' || isAdmin,
    isOwner: role === 'owner' || isAdmin,
    hasTenant: isAdmin ? Boolean(session.tenantId) : true,
  };
  const nav: [string, string, boolean][] = [
    ['/licenses', 'Licenses', access.hasTenant && role !== 'ingest'],
    ['/api-keys', 'API keys', access.hasTenant && access.isOwner],
    ['/webhooks', 'Webhooks', access.hasTenant && access.isOwner],
    ['/audit', 'Audit log', access.hasTenant && access.isOwner],
    ['/billing', 'Billing', access.hasTenant && role !== 'ingest'],
    ['/operator', 'Operator', isAdmin],
  ];
  return (
    <div className="shell">
      <a className="skip" href="#content">
        Skip to content
      </a>
      <header className="top">
        <Link to="/" className="brand">
          Tally
        </Link>
        <nav aria-label="Main">
          <ul>
            {nav
              .filter(([, , shown]) => shown)
              .map(([to, label]) => (
                <li key={to}>
                  <Link to={to} aria-current={path === to || (to === '/licenses' && path.startsWith('/licenses')) ? 'page' : undefined}>
                    {label}
                  </Link>
                </li>
              ))}
          </ul>
        </nav>
        <div className="who">
          {isAdmin && (
            <TenantPicker
              onPick={() => {
                queryClient.clear();
                setTenantVersion((v) => v + 1);
              }}
            />
          )}
          <span className="key-info" data-role={role}>
            {me.data.tenant ? `${me.data.tenant.name} · ` : ''}
            {me.data.prefix}… · <span className="role">{role}</span> · {me.data.environment}
          </span>
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="content" ref={mainRef} tabIndex={-1}>
        <Routes access={access} />
      </main>
    </div>
  );
}
