import { readableError } from "../lib/errors";

interface Props {
  error: unknown;
  /** Offered as a "Try again" button when given. */
  onRetry?: () => void;
  compact?: boolean;
}

/** A readable error: what happened and what to do, never a blank area. */
export function ErrorMessage({ error, onRetry, compact = false }: Props) {
  const { title, message, code } = readableError(error);
  return (
    <div className={compact ? "error error--compact" : "error"} role="alert" data-code={code}>
      <strong className="error__title">{title}</strong>
      <span className="error__message">{message}</span>
      {onRetry && (
        <button type="button" className="button button--small" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}
