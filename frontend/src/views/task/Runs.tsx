import { useMutation } from "urql";
import type { RunFieldsFragment } from "../../gql/graphql";
import { Can } from "../../app/workspace";
import { ErrorMessage } from "../../components/ErrorMessage";
import { formatCost, formatDuration, formatTime } from "../../lib/format";
import { CancelRunDocument, RetryRunDocument } from "./queries";
import {
  ACTIVE_RUN_STATUSES,
  RETRYABLE_RUN_STATUSES,
  failureLabel,
  runBadgeClass,
  runDurationMs,
  runStatusLabel,
} from "./runMeta";
import { useLiveRun, useNow } from "./useLiveRun";

interface Props {
  runs: RunFieldsFragment[];
  selected: string | null;
  onSelect: (runId: string) => void;
  /** After a cancel or a retry: the page loads its runs again. */
  onChanged?: () => void;
}

/** Why a run still waits, in words: the server's reason and its place in the queue. */
export function waitingText(run: Pick<RunFieldsFragment, "status" | "queueReason" | "queuePosition">): string | null {
  if (!ACTIVE_RUN_STATUSES.has(run.status)) return null;
  const parts: string[] = [];
  if (run.queueReason) parts.push(run.queueReason);
  if (run.status === "QUEUED" && run.queuePosition) parts.push(run.queuePosition === 1 ? "next in line" : `#${run.queuePosition} in line`);
  if (run.status === "DISPATCHED") parts.push("waiting for the machine to pick it up");
  return parts.length ? parts.join(" · ") : null;
}

/** The task's runs, newest first: status, why it waits, cost, duration, cancel and retry. */
export function Runs({ runs, selected, onSelect, onChanged }: Props) {
  if (runs.length === 0) return <p className="muted">No runs yet. Assign the task to an agent to start one.</p>;
  const ordered = [...runs].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return (
    <ul className="list" aria-label="Runs">
      {ordered.map((run) => (
        <RunItem key={run.id} run={run} selected={run.id === selected} onSelect={onSelect} onChanged={onChanged} />
      ))}
    </ul>
  );
}

function RunItem({
  run: loaded,
  selected,
  onSelect,
  onChanged,
}: {
  run: RunFieldsFragment;
  selected: boolean;
  onSelect: (runId: string) => void;
  onChanged?: () => void;
}) {
  const run = useLiveRun(loaded)!;
  const active = ACTIVE_RUN_STATUSES.has(run.status);
  const now = useNow(active && Boolean(run.startedAt));
  const [cancelling, cancel] = useMutation(CancelRunDocument);
  const [retrying, retry] = useMutation(RetryRunDocument);
  const waiting = waitingText(run);
  const busy = cancelling.fetching || retrying.fetching;

  async function onCancel() {
    const result = await cancel({ id: run.id });
    if (!result.error) onChanged?.();
  }
  async function onRetry() {
    const result = await retry({ id: run.id });
    if (result.data) {
      onChanged?.();
      onSelect(result.data.retryRun.id);
    }
  }

  return (
    <li
      className="panel run"
      data-run-id={run.id}
      data-status={run.status}
      aria-current={selected}
      aria-label={`Run by ${run.agent.name}, ${runStatusLabel(run.status)}`}
    >
      <div className="page__header">
        <strong>{run.agent.name}</strong>
        <span className={runBadgeClass(run.status)} data-testid="run-status">
          {runStatusLabel(run.status)}
        </span>
      </div>
      {waiting && (
        <p className="muted" data-testid="run-waiting">
          Waiting: {waiting}
        </p>
      )}
      {active && run.cancelRequested && <p className="muted">Cancelling: the machine is stopping it…</p>}
      {run.status === "FAILED" && (
        <p className="run__failure" data-testid="run-failure">
          Failed{run.failureCode ? `: ${failureLabel(run.failureCode)} (${run.failureCode})` : ""}
          {run.error && <span className="run__error">{run.error}</span>}
        </p>
      )}
      <dl className="kv">
        <dt>Started</dt>
        <dd>{formatTime(run.startedAt ?? run.createdAt)}</dd>
        <dt>Attempt</dt>
        <dd data-testid="run-attempt">
          {run.attempt} of {run.maxAttempts}
        </dd>
        <dt>Cost</dt>
        <dd data-testid="run-cost">{formatCost(run.costUsd)}</dd>
        <dt>Duration</dt>
        <dd data-testid="run-duration">{formatDuration(runDurationMs(run, now))}</dd>
      </dl>
      {run.diffStat && (
        <details className="run__diff">
          <summary>Changes</summary>
          <pre data-testid="run-diffstat">{run.diffStat}</pre>
        </details>
      )}
      {(cancelling.error || retrying.error) && <ErrorMessage error={cancelling.error ?? retrying.error} compact />}
      <div className="form__actions">
        <Can permission="run.control">
          {active && !run.cancelRequested && (
            <button type="button" className="button button--danger button--small" disabled={busy} onClick={onCancel}>
              {cancelling.fetching ? "Cancelling…" : "Cancel run"}
            </button>
          )}
          {RETRYABLE_RUN_STATUSES.has(run.status) && (
            <button type="button" className="button button--small" disabled={busy} onClick={onRetry}>
              {retrying.fetching ? "Retrying…" : "Retry"}
            </button>
          )}
        </Can>
        <button type="button" className="button button--small" aria-pressed={selected} onClick={() => onSelect(run.id)}>
          {selected ? "Showing transcript" : "Show transcript"}
        </button>
      </div>
    </li>
  );
}
