import type { RunFieldsFragment } from "../../gql/graphql";
import { formatCost, formatDuration, formatTime } from "../../lib/format";
import { ACTIVE_RUN_STATUSES, runBadgeClass, runStatusLabel } from "./runMeta";

interface Props {
  runs: RunFieldsFragment[];
  selected: string | null;
  onSelect: (runId: string) => void;
}

/** Why a run still waits: the reason recorded with its latest transition. */
export function queueReason(run: RunFieldsFragment): string | null {
  if (!ACTIVE_RUN_STATUSES.has(run.status)) return null;
  const latest = run.history.at(-1);
  return latest?.reason || null;
}

/** The task's runs, newest first: status, why it waits, cost, duration. */
export function Runs({ runs, selected, onSelect }: Props) {
  if (runs.length === 0) return <p className="muted">No runs yet. Assign the task to an agent to start one.</p>;
  const ordered = [...runs].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return (
    <ul className="list" aria-label="Runs">
      {ordered.map((run) => {
        const reason = queueReason(run);
        return (
          <li key={run.id} className="panel run" data-run-id={run.id} data-status={run.status} aria-current={run.id === selected}>
            <div className="page__header">
              <strong>{run.agent.name}</strong>
              <span className={runBadgeClass(run.status)} data-testid="run-status">
                {runStatusLabel(run.status)}
              </span>
            </div>
            {reason && <p className="muted">Waiting: {reason}</p>}
            {run.failureCode && (
              <p className="muted">
                Failed: {run.failureCode}
                {run.error ? ` — ${run.error}` : ""}
              </p>
            )}
            <dl className="kv">
              <dt>Started</dt>
              <dd>{formatTime(run.createdAt)}</dd>
              <dt>Attempt</dt>
              <dd>{run.attempt}</dd>
              <dt>Cost</dt>
              <dd>{formatCost(run.costUsd)}</dd>
              <dt>Duration</dt>
              <dd>{formatDuration(run.durationMs)}</dd>
            </dl>
            <div className="form__actions">
              <button type="button" className="button button--small" aria-pressed={run.id === selected} onClick={() => onSelect(run.id)}>
                {run.id === selected ? "Showing transcript" : "Show transcript"}
              </button>
            </div>
          </li>
        );
      })}
    </ul>
  );
}
