import { useMutation } from "urql";
import type { RunFieldsFragment } from "../../gql/graphql";
import { Can } from "../../app/workspace";
import { ErrorMessage } from "../../components/ErrorMessage";
import { formatCost, formatDuration, formatTime } from "../../lib/format";
import { CancelRunDocument, RetryRunDocument } from "./queries";
import { ACTIVE_RUN_STATUSES, runBadgeClass, runStatusLabel } from "./runMeta";

interface Props {
  runs: RunFieldsFragment[];
  selected: string | null;
  onSelect: (runId: string) => void;
  onChanged: () => void;
}

/** The task's runs, newest first: status, why it waits, cost, duration; cancel or retry. */
export function Runs({ runs, selected, onSelect, onChanged }: Props) {
  const [cancelState, cancel] = useMutation(CancelRunDocument);
  const [retryState, retry] = useMutation(RetryRunDocument);
  if (runs.length === 0) return <p className="muted">No runs yet. Assign the task to an agent to start one.</p>;
  const ordered = [...runs].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return (
    <>
      {(cancelState.error || retryState.error) && <ErrorMessage error={cancelState.error ?? retryState.error} compact />}
      <ul className="list" aria-label="Runs">
        {ordered.map((run) => {
          const active = ACTIVE_RUN_STATUSES.has(run.status);
          return (
            <li key={run.id} className="panel run" data-run-id={run.id} data-status={run.status} aria-current={run.id === selected}>
              <div className="page__header">
                <strong>{run.agent.name}</strong>
                <span className={runBadgeClass(run.status)} data-testid="run-status">
                  {runStatusLabel(run.status)}
                </span>
              </div>
              {run.queueReason && active && <p className="muted">Waiting: {run.queueReason}</p>}
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
                <button type="button" className="button button--small" onClick={() => onSelect(run.id)}>
                  {run.id === selected ? "Showing transcript" : "Show transcript"}
                </button>
                <Can permission="run.control">
                  {active ? (
                    <button
                      type="button"
                      className="button button--small button--danger"
                      disabled={cancelState.fetching}
                      onClick={async () => {
                        const result = await cancel({ runId: run.id });
                        if (!result.error) onChanged();
                      }}
                    >
                      {cancelState.fetching ? "Cancelling…" : "Cancel"}
                    </button>
                  ) : (
                    run.status !== "SUCCEEDED" && (
                      <button
                        type="button"
                        className="button button--small"
                        disabled={retryState.fetching}
                        onClick={async () => {
                          const result = await retry({ runId: run.id });
                          if (result.data) {
                            onSelect(result.data.retryRun.id);
                            onChanged();
                          }
                        }}
                      >
                        {retryState.fetching ? "Retrying…" : "Retry"}
                      </button>
                    )
                  )}
                </Can>
              </div>
            </li>
          );
        })}
      </ul>
    </>
  );
}
