import { useEffect, useMemo, useRef } from "react";
import { useQuery, useSubscription } from "urql";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { formatCost, formatDuration } from "../../lib/format";
import { RunDocument, RunTranscriptLiveDocument } from "./queries";
import { ACTIVE_RUN_STATUSES, failureLabel, runBadgeClass, runDurationMs, runStatusLabel } from "./runMeta";
import { useLiveRun, useNow } from "./useLiveRun";

/** One normalised transcript event (taskmachine.wire.transcript): text, tool_call, tool_result, usage, … */
export interface TranscriptEvent {
  kind: string;
  call_id?: string;
  text?: string;
  name?: string;
  input?: unknown;
  output?: string;
  is_error?: boolean;
  message?: string;
  cost_usd?: number | null;
  input_tokens?: number;
  output_tokens?: number;
  cached_input_tokens?: number;
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

type Entry = ReturnType<typeof flattenChunks>[number];

/** What the transcript shows: attempt breaks, single events, and tool calls with their results. */
export type TranscriptItem =
  | { type: "attempt"; key: string; attempt: number }
  | { type: "event"; key: string; event: TranscriptEvent }
  | { type: "tool"; key: string; call: TranscriptEvent; result: TranscriptEvent | null };

/** Puts each tool result under its call (by call_id) and marks where a new attempt starts. */
export function groupEntries(entries: Entry[]): TranscriptItem[] {
  const items: TranscriptItem[] = [];
  const calls = new Map<string, Extract<TranscriptItem, { type: "tool" }>>();
  let attempt = entries[0]?.attempt ?? 1;
  for (const { key, attempt: entryAttempt, event } of entries) {
    if (entryAttempt !== attempt) {
      attempt = entryAttempt;
      calls.clear();
      items.push({ type: "attempt", key: `attempt:${attempt}`, attempt });
    }
    if (event.kind === "tool_call") {
      const item = { type: "tool" as const, key, call: event, result: null };
      if (event.call_id) calls.set(event.call_id, item);
      items.push(item);
      continue;
    }
    const call = event.kind === "tool_result" && event.call_id ? calls.get(event.call_id) : undefined;
    if (call && !call.result) {
      call.result = event;
      continue;
    }
    items.push({ type: "event", key, event });
  }
  return items;
}

/** The cost and tokens reported so far (the newest usage event of the newest attempt). */
export function latestUsage(entries: Entry[]): TranscriptEvent | null {
  return entries.filter((e) => e.event.kind === "usage").at(-1)?.event ?? null;
}

/** A run's transcript, streamed: the subscription replays what is stored, then follows live. */
export function Transcript({ runId }: { runId: string }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: RunDocument, variables: { runId }, requestPolicy: "network-only" });
  const [live] = useSubscription(
    { query: RunTranscriptLiveDocument, variables: { runId } },
    (previous: TranscriptChunk[] = [], response) => previous.concat([response.runTranscript]),
  );
  const entries = useMemo(() => flattenChunks(live.data ?? []), [live.data]);
  const items = useMemo(() => groupEntries(entries), [entries]);
  const run = useLiveRun(data?.run);
  const active = !run || ACTIVE_RUN_STATUSES.has(run.status);
  const now = useNow(active && Boolean(run?.startedAt));
  const usage = useMemo(() => latestUsage(entries), [entries]);
  const cost = run?.costUsd ?? usage?.cost_usd ?? null;
  const duration = run ? runDurationMs(run, now) : null;
  const end = useRef<HTMLDivElement>(null);
  // Braces matter: newer Chromium returns a promise from scrollIntoView, and an effect must not.
  useEffect(() => {
    end.current?.scrollIntoView?.({ block: "nearest" });
  }, [items.length]);

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
          Cost {formatCost(cost)} · Duration {formatDuration(duration)}
          {usage ? ` · ${usage.input_tokens ?? 0} tokens in, ${usage.output_tokens ?? 0} out` : ""}
        </span>
      </div>
      <div aria-live="polite">
        {items.length === 0 && <p className="muted">{active ? "Waiting for output…" : "No output was recorded."}</p>}
        {items.map((item) =>
          item.type === "attempt" ? (
            <div key={item.key} className="entry entry--attempt" role="separator">
              Attempt {item.attempt}
            </div>
          ) : item.type === "tool" ? (
            <ToolEntry key={item.key} call={item.call} result={item.result} />
          ) : (
            <TranscriptEntry key={item.key} event={item.event} />
          ),
        )}
      </div>
      {run?.status === "FAILED" && (
        <p className="run__failure">
          The run failed{run.failureCode ? `: ${failureLabel(run.failureCode)}` : ""}.{run.error ? ` ${run.error}` : ""}
        </p>
      )}
      {live.error && <ErrorMessage error={live.error} compact />}
      <div ref={end} />
    </div>
  );
}

/** A short line for a tool call: the command for a shell, else its first string argument. */
export function toolSummary(event: TranscriptEvent): string {
  const input = event.input;
  if (typeof input === "string") return input;
  if (input && typeof input === "object") {
    const record = input as Record<string, unknown>;
    for (const key of ["command", "cmd", "file_path", "path", "pattern", "url", "query"]) {
      const value = record[key];
      if (typeof value === "string" && value) return value;
      if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value.join(" ");
    }
  }
  return "";
}

function oneLine(text: string, limit = 120): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > limit ? `${line.slice(0, limit - 1)}…` : line;
}

/** A tool call and its result, collapsed to one line until opened. */
export function ToolEntry({ call, result }: { call: TranscriptEvent; result: TranscriptEvent | null }) {
  const failed = Boolean(result?.is_error);
  const summary = toolSummary(call);
  return (
    <details className={failed ? "entry entry--tool entry--error" : "entry entry--tool"} data-testid="tool-entry">
      <summary>
        <span className="entry__label">Tool call · {call.name ?? "tool"}</span> <code>{oneLine(summary)}</code>{" "}
        <span className="muted">{result ? (failed ? "failed" : "done") : "running…"}</span>
      </summary>
      <div className="entry__label">Input</div>
      <pre>{typeof call.input === "string" ? call.input : JSON.stringify(call.input ?? {}, null, 2)}</pre>
      {result && (
        <>
          <div className="entry__label">{failed ? "Tool error" : "Tool result"}</div>
          <pre>{result.output ?? ""}</pre>
        </>
      )}
    </details>
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
      return <ToolEntry call={event} result={null} />;
    case "tool_result":
      return (
        <details className={event.is_error ? "entry entry--error" : "entry entry--tool_result"}>
          <summary className="entry__label">{event.is_error ? "Tool error" : "Tool result"}</summary>
          <pre>{event.output ?? ""}</pre>
        </details>
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
    case "system":
      return (
        <div className="entry entry--system">
          <span className="entry__label">Note</span> <span className="muted">{event.message ?? ""}</span>
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
