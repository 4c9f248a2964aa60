import { useEffect, useMemo, useRef, useState } from "react";
import { useQuery, useSubscription } from "urql";
import type { RunTranscriptQuery } from "../../gql/graphql";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { formatCost, formatDuration } from "../../lib/format";
import { RunTranscriptDocument, RunTranscriptLiveDocument } from "./queries";
import { ACTIVE_RUN_STATUSES } from "./runMeta";

export type TranscriptEvent = NonNullable<RunTranscriptQuery["run"]>["transcript"][number];

/** Merges live events into the recorded ones by sequence number (duplicates and reorders are harmless). */
export function mergeEvents(recorded: TranscriptEvent[], live: TranscriptEvent[]): TranscriptEvent[] {
  const bySeq = new Map<number, TranscriptEvent>();
  for (const event of recorded) bySeq.set(event.seq, event);
  for (const event of live) bySeq.set(event.seq, event);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/** A run's transcript: what is recorded, then what streams in while it runs. */
export function Transcript({ runId }: { runId: string }) {
  const [{ data, fetching, error }, refetch] = useQuery({
    query: RunTranscriptDocument,
    variables: { runId },
    requestPolicy: "network-only",
  });
  const [live, setLive] = useState<TranscriptEvent[]>([]);
  const status = data?.run?.status;
  const streaming = status === undefined || ACTIVE_RUN_STATUSES.has(status);
  const [liveResult] = useSubscription(
    { query: RunTranscriptLiveDocument, variables: { runId }, pause: !streaming },
    (previous: TranscriptEvent[] = [], event) => previous.concat([event.runTranscript]),
  );
  useEffect(() => setLive(liveResult.data ?? []), [liveResult.data]);
  useEffect(() => setLive([]), [runId]);
  const sawResult = live.some((e) => e.kind === "result");
  useEffect(() => {
    // The run finished while we watched: load its final record (status, cost, duration).
    if (sawResult) refetch({ requestPolicy: "network-only" });
  }, [sawResult, refetch]);

  const events = useMemo(() => mergeEvents(data?.run?.transcript ?? [], live), [data, live]);
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => end.current?.scrollIntoView?.({ block: "nearest" }), [events.length]);

  if (fetching && !data) return <Loading label="Loading the transcript…" />;
  if (error) return <ErrorMessage error={error} onRetry={() => refetch({ requestPolicy: "network-only" })} />;
  return (
    <div className="transcript" aria-label="Transcript" aria-live="polite" data-testid="transcript">
      {events.length === 0 && <p className="muted">{streaming ? "Waiting for output…" : "No output was recorded."}</p>}
      {events.map((event) => (
        <TranscriptEntry key={event.seq} event={event} />
      ))}
      {liveResult.error && <ErrorMessage error={liveResult.error} compact />}
      <div ref={end} />
    </div>
  );
}

function TranscriptEntry({ event }: { event: TranscriptEvent }) {
  switch (event.kind) {
    case "tool_call":
      return (
        <div className="entry entry--tool_call">
          <div className="entry__label">Tool call · {event.toolName ?? "tool"}</div>
          <pre>{typeof event.input === "string" ? event.input : JSON.stringify(event.input, null, 2)}</pre>
        </div>
      );
    case "tool_result":
      return (
        <div className={event.isError ? "entry entry--error" : "entry entry--tool_result"}>
          <div className="entry__label">{event.isError ? "Tool error" : "Tool result"}</div>
          <pre>{event.output ?? ""}</pre>
        </div>
      );
    case "result":
      return (
        <div className={event.isError ? "entry entry--error" : "entry"} data-testid="transcript-result">
          <div className="entry__label">Finished</div>
          {event.text && <p>{event.text}</p>}
          <span className="muted">
            Cost {formatCost(event.costUsd)} · Duration {formatDuration(event.durationMs)}
          </span>
        </div>
      );
    case "error":
      return (
        <div className="entry entry--error">
          <div className="entry__label">Error</div>
          <pre>{event.text ?? event.output ?? ""}</pre>
        </div>
      );
    default:
      return (
        <div className="entry entry--text">
          <pre>{event.text ?? ""}</pre>
        </div>
      );
  }
}
