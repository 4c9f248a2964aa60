import { useEffect, useMemo, useRef } from "react";
import { useQuery, useSubscription } from "urql";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { formatCost, formatDuration } from "../../lib/format";
import { RunDocument, RunTranscriptLiveDocument } from "./queries";
import { ACTIVE_RUN_STATUSES, runBadgeClass, runStatusLabel } from "./runMeta";

/** One normalised transcript event (taskmachine.wire.transcript): text, tool_call, tool_result, usage, … */
export interface TranscriptEvent {
  kind: string;
  text?: string;
  name?: string;
  input?: unknown;
  output?: string;
  is_error?: boolean;
  message?: string;
  cost_usd?: number | null;
  input_tokens?: number;
  output_tokens?: number;
}

export interface TranscriptChunk {
  attempt: number;
  seq: number;
  events: unknown;
}

/** Orders chunks by (attempt, seq), drops repeats, and flattens them into keyed events. */
export function flattenChunks(chunks: TranscriptChunk[]): { key: string; attempt: number; event: TranscriptEvent }[] {
  const unique = new Map<string, TranscriptChunk>();
  for (const chunk of chunks) unique.set(`${chunk.attempt}:${chunk.seq}`, chunk);
  const ordered = [...unique.values()].sort((a, b) => a.attempt - b.attempt || a.seq - b.seq);
  return ordered.flatMap((chunk) =>
    (Array.isArray(chunk.events) ? chunk.events : [])
      .filter((e): e is TranscriptEvent => Boolean(e) && typeof e === "object" && "kind" in (e as object))
      .map((event, index) => ({ key: `${chunk.attempt}:${chunk.seq}:${index}`, attempt: chunk.attempt, event })),
  );
}

/** A run's transcript, streamed: the subscription replays what is stored, then follows live. */
export function Transcript({ runId }: { runId: string }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: RunDocument, variables: { runId }, requestPolicy: "network-only" });
  const [live] = useSubscription(
    { query: RunTranscriptLiveDocument, variables: { runId } },
    (previous: TranscriptChunk[] = [], response) => previous.concat([response.runTranscript]),
  );
  const entries = useMemo(() => flattenChunks(live.data ?? []), [live.data]);
  const run = data?.run;
  const active = !run || ACTIVE_RUN_STATUSES.has(run.status);
  // While it runs, follow its status (and at the end its cost and duration).
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => refetch({ requestPolicy: "network-only" }), 2000);
    return () => clearInterval(timer);
  }, [active, refetch]);
  const cost = useMemo(() => {
    const usage = entries.filter((e) => e.event.kind === "usage").at(-1)?.event;
    return run?.costUsd ?? usage?.cost_usd ?? null;
  }, [entries, run?.costUsd]);
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => end.current?.scrollIntoView?.({ block: "nearest" }), [entries.length]);

  if (fetching && !data) return <Loading label="Loading the run…" />;
  if (error && !data) return <ErrorMessage error={error} onRetry={() => refetch({ requestPolicy: "network-only" })} />;
  return (
    <div className="transcript" aria-label="Transcript" data-testid="transcript">
      <div className="page__header">
        {run && (
          <span className={runBadgeClass(run.status)} data-testid="transcript-status">
            {runStatusLabel(run.status)}
          </span>
        )}
        <span className="muted" data-testid="transcript-figures">
          Cost {formatCost(cost)} · Duration {formatDuration(run?.durationMs)}
        </span>
      </div>
      <div aria-live="polite">
        {entries.length === 0 && <p className="muted">{active ? "Waiting for output…" : "No output was recorded."}</p>}
        {entries.map(({ key, event }) => (
          <TranscriptEntry key={key} event={event} />
        ))}
      </div>
      {live.error && <ErrorMessage error={live.error} compact />}
      <div ref={end} />
    </div>
  );
}

export function TranscriptEntry({ event }: { event: TranscriptEvent }) {
  switch (event.kind) {
    case "text":
      return (
        <div className="entry entry--text">
          <pre>{event.text ?? ""}</pre>
        </div>
      );
    case "tool_call":
      return (
        <div className="entry entry--tool_call">
          <div className="entry__label">Tool call · {event.name ?? "tool"}</div>
          <pre>{typeof event.input === "string" ? event.input : JSON.stringify(event.input ?? {}, null, 2)}</pre>
        </div>
      );
    case "tool_result":
      return (
        <div className={event.is_error ? "entry entry--error" : "entry entry--tool_result"}>
          <div className="entry__label">{event.is_error ? "Tool error" : "Tool result"}</div>
          <pre>{event.output ?? ""}</pre>
        </div>
      );
    case "usage":
      return (
        <div className="entry entry--usage">
          <div className="entry__label">Usage</div>
          <span className="muted">
            {event.input_tokens ?? 0} tokens in · {event.output_tokens ?? 0} out · cost {formatCost(event.cost_usd)}
          </span>
        </div>
      );
    case "error":
      return (
        <div className="entry entry--error">
          <div className="entry__label">Error</div>
          <pre>{event.message ?? ""}</pre>
        </div>
      );
    case "session":
      return null;
    default:
      return (
        <div className="entry">
          <div className="entry__label">{event.kind}</div>
          <pre>{event.message ?? event.text ?? ""}</pre>
        </div>
      );
  }
}
