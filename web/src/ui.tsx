import { useState, type ReactNode } from 'react';
import type { UseQueryResult } from '@tanstack/react-query';
import { describeError } from './api';
import { formatDecimal, levelOf, ratio } from './format';

export function Loading({ label = 'Loading' }: { label?: string }) {
  return (
    <p className="state loading" role="status" aria-live="polite">
      {label}…
    </p>
  );
}

export function ErrorBox({ error, title = 'Something went wrong' }: { error: unknown; title?: string }) {
  const { message, status } = describeError(error);
  return (
    <div className="state error" role="alert">
      <strong>{title}</strong>
      {status ? ` (${status})` : ''}: {message}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="state empty">{children}</p>;
}

/** Loading, error and empty states for one query, then the content. */
export function QueryView<T>({ query, empty, children, label }: { query: UseQueryResult<T>; empty?: (data: T) => ReactNode | false; children: (data: T) => ReactNode; label?: string }) {
  if (query.isPending) return <Loading label={label ? `Loading ${label}` : 'Loading'} />;
  if (query.isError) return <ErrorBox error={query.error} title={label ? `Could not load ${label}` : undefined} />;
  const e = empty?.(query.data);
  if (e) return <Empty>{e}</Empty>;
  return <>{children(query.data)}</>;
}

/** Used against limit, coloured at the warning levels 50 / 80 / 95 / 100 %. */
export function UsageBar({ label, used, limit }: { label: string; used: string; limit: string | null }) {
  const r = ratio(used, limit);
  const level = r === null ? 0 : levelOf(r);
  const pct = r === null ? 0 : Math.min(100, r * 100);
  const text = limit === null ? `${formatDecimal(used)} used (no limit)` : `${formatDecimal(used)} of ${formatDecimal(limit)}`;
  return (
    <div className="usage-bar" data-level={level}>
      <div className="usage-bar-label">
        <span>{label}</span>
        <span className="usage-bar-text" data-used={used} data-limit={limit ?? ''}>
          {text}
          {r !== null ? ` (${Math.floor(r * 1000) / 10} %)` : ''}
        </span>
      </div>
      {limit !== null && (
        <div
          className="usage-bar-track"
          role="progressbar"
          aria-label={`${label}: ${text}`}
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={Math.round(pct)}
          aria-valuetext={`${text}${level ? `, past the ${level} % level` : ''}`}
        >
          <div className="usage-bar-fill" style={{ width: `${pct}%` }} />
        </div>
      )}
    </div>
  );
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      onClick={() => {
        void navigator.clipboard?.writeText(text).then(
          () => setCopied(true),
          () => setCopied(false),
        );
      }}
    >
      {copied ? 'Copied' : label}
    </button>
  );
}

/** A secret shown once: visible, selectable, with a copy button, and said so. */
export function ShownOnce({ title, secret, onDone }: { title: string; secret: string; onDone: () => void }) {
  return (
    <div className="shown-once" role="region" aria-label={title}>
      <p>
        <strong>{title}</strong>: shown once, copy it now. Tally keeps only a hash.
      </p>
      <code className="secret" data-testid="shown-once-secret">
        {secret}
      </code>
      <div className="row">
        <CopyButton text={secret} />
        <button type="button" onClick={onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

/** A button that asks again inline before doing something that cannot be undone. */
export function ConfirmButton({ label, confirmLabel, question, onConfirm, disabled }: { label: string; confirmLabel: string; question: string; onConfirm: () => void; disabled?: boolean }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" className="danger" onClick={() => setAsking(true)} disabled={disabled}>
        {label}
      </button>
    );
  return (
    <span className="confirm" role="group" aria-label={question}>
      <span>{question}</span>
      <button
        type="button"
        className="danger"
        autoFocus
        onClick={() => {
          setAsking(false);
          onConfirm();
        }}
      >
        {confirmLabel}
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

export function Pager({ hasPrevious, next, onPrevious, onNext }: { hasPrevious: boolean; next: string | null; onPrevious: () => void; onNext: (cursor: string) => void }) {
  return (
    <nav className="pager" aria-label="Pages">
      <button type="button" onClick={onPrevious} disabled={!hasPrevious}>
        Previous page
      </button>
      <button type="button" onClick={() => next && onNext(next)} disabled={!next}>
        Next page
      </button>
    </nav>
  );
}
