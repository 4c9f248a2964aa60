interface Props {
  label?: string;
}

/** A polite, labelled progress indicator for anything that waits on the server. */
export function Loading({ label = "Loading…" }: Props) {
  return (
    <div className="loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      <span>{label}</span>
    </div>
  );
}

/** A thin bar along the top of a region while something long runs. */
export function ProgressBar({ active, label }: { active: boolean; label: string }) {
  if (!active) return null;
  return <div className="progress" role="progressbar" aria-label={label} aria-busy="true" />;
}
