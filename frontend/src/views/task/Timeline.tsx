import { useState } from "react";
import { useMutation } from "urql";
import type { CommentFieldsFragment, TaskPageQuery } from "../../gql/graphql";
import { Can, useWorkspace } from "../../app/workspace";
import { ErrorMessage } from "../../components/ErrorMessage";
import { formatCost, formatTime, personName } from "../../lib/format";
import { priorityLabel, statusLabel } from "../board/taskMeta";
import { Composer, type Mentionable } from "./Composer";
import { ReactDocument } from "./queries";
import { failureLabel, runBadgeClass, runStatusLabel } from "./runMeta";

export type TimelineItem = TaskPageQuery["timeline"]["edges"][number]["node"];

const QUICK_REACTIONS = ["👍", "🎉", "👀", "❤️"];

function field(data: unknown, key: string): string {
  if (data && typeof data === "object" && key in data) {
    const value = (data as Record<string, unknown>)[key];
    return value === null || value === undefined ? "" : String(value);
  }
  return "";
}

/** One sentence for every kind of event; comments get their own block. */
export function describeEvent(event: TimelineItem, names: ReadonlyMap<string, string> = new Map()): string {
  const who = personName(event.actor);
  const data = event.data;
  switch (event.kind) {
    case "CREATED":
      return `${who} created the task`;
    case "EDITED":
      return `${who} edited the task`;
    case "STATUS_CHANGED":
      return `${who} moved it from ${statusLabel(field(data, "from").toUpperCase())} to ${statusLabel(field(data, "to").toUpperCase())}`;
    case "PRIORITY_CHANGED":
      return `${who} set priority to ${priorityLabel(field(data, "to").toUpperCase())}`;
    case "ASSIGNED": {
      const agent = field(data, "to_agent");
      const user = field(data, "to_user");
      if (agent) return `${who} assigned it to ${names.get(agent) ?? "an agent"} (agent)`;
      if (user) return `${who} assigned it to ${names.get(user) ?? "someone"}`;
      return `${who} unassigned it`;
    }
    case "RUN":
      return describeRun(event, who);
    case "SUMMARY":
      return `${who} wrote the summary`;
    case "REFUSAL":
      return `${who} refused: ${field(data, "reason") || "no reason given"}`;
    case "NOOP": {
      const reason = field(data, "reason") || "nothing to do";
      const byLoop = field(data, "recorded_by") === "loop";
      return `${who} did nothing: ${reason}${byLoop ? " (recorded by the loop)" : ""}`;
    }
    case "REACTED":
      return `${who} reacted ${field(data, "emoji")}`;
    default:
      return `${who}: ${event.kind.toLowerCase().replace(/_/g, " ")}`;
  }
}

/** A run's step on the timeline, from what the event recorded (not the run's current state). */
function describeRun(event: TimelineItem, who: string): string {
  const data = event.data;
  const agent = event.run?.agent.name ?? who;
  const attempt = Number(field(data, "attempt")) || 1;
  const again = attempt > 1 ? ` (attempt ${attempt})` : "";
  const code = field(data, "failure_code");
  switch (field(data, "status")) {
    case "queued": {
      const trigger = field(data, "trigger");
      return `${agent} was asked to work${trigger ? ` (${trigger.replace(/_/g, " ")})` : ""}: run queued`;
    }
    case "running":
      return `${agent} started working${again}`;
    case "succeeded": {
      const cost = Number(field(data, "cost_usd"));
      return `${agent}'s run succeeded${again}${field(data, "cost_usd") && !Number.isNaN(cost) ? ` · ${formatCost(cost)}` : ""}`;
    }
    case "retrying":
      return `${agent}'s run is retried${again}${code ? ` after ${failureLabel(code)} (${code})` : ""}`;
    case "failed":
      return `${agent}'s run failed${code ? `: ${failureLabel(code)} (${code})` : ""}`;
    case "cancelled":
      return `${agent}'s run was cancelled`;
    default:
      return `${agent}'s run: ${field(data, "status") || "changed"}`;
  }
}

/** The RUN event's own status as a run status (for its badge). */
export function runEventStatus(event: TimelineItem): string | null {
  const status = field(event.data, "status");
  if (!status) return event.run?.status ?? null;
  return status === "retrying" ? "QUEUED" : status.toUpperCase();
}

/** Agents mark questions, approval requests and blocks with a bold label at the start. */
const MARKERS: [string, string][] = [
  ["**Blocked:** ", "Blocked"],
  ["**Question:** ", "Question"],
  ["**Approval requested:** ", "Approval requested"],
];

export function commentMarker(body: string): { label: string | null; text: string } {
  for (const [prefix, label] of MARKERS) {
    if (body.startsWith(prefix)) return { label, text: body.slice(prefix.length) };
  }
  return { label: null, text: body };
}

interface Props {
  taskId: string;
  events: TimelineItem[];
  /** Names of people and agents by id, for events that record only ids. */
  names?: ReadonlyMap<string, string>;
  mentionables: Mentionable[];
  onChanged: () => void;
  onOpenRun: (runId: string) => void;
}

/** Replies sit under their thread's root comment; everything else keeps its place in time. */
export function threadEvents(events: TimelineItem[]): { top: TimelineItem[]; replies: Map<string, CommentFieldsFragment[]> } {
  const replies = new Map<string, CommentFieldsFragment[]>();
  const top: TimelineItem[] = [];
  for (const event of events) {
    const parent = event.comment?.parentId;
    if (event.kind === "COMMENTED" && event.comment && parent) {
      replies.set(parent, [...(replies.get(parent) ?? []), event.comment]);
    } else {
      top.push(event);
    }
  }
  return { top, replies };
}

/** The task's history: comments with threads and reactions, status changes, runs, refusals, no-ops. */
export function Timeline({ taskId, events, names, mentionables, onChanged, onOpenRun }: Props) {
  const { top, replies } = threadEvents(events);
  return (
    <ol className="timeline" aria-label="Timeline" data-testid="timeline">
      {top.map((event) => (
        <li
          key={event.id}
          className={`event event--${event.kind === "COMMENTED" ? "comment" : event.kind.toLowerCase()}`}
          data-kind={event.kind}
        >
          {event.kind === "COMMENTED" && event.comment ? (
            <CommentBlock
              taskId={taskId}
              comment={event.comment}
              replies={replies.get(event.comment.id) ?? []}
              mentionables={mentionables}
              onChanged={onChanged}
            />
          ) : (
            <div>
              <span>{describeEvent(event, names)}</span>{" "}
              {event.kind === "SUMMARY" && field(event.data, "summary") && (
                <div className="comment__body summary__text">{field(event.data, "summary")}</div>
              )}
              {event.kind === "RUN" && field(event.data, "status") === "failed" && field(event.data, "error") && (
                <pre className="run__error">{field(event.data, "error")}</pre>
              )}
              {event.run && (
                <>
                  {event.kind === "RUN" && (
                    <>
                      <span className={runBadgeClass(runEventStatus(event) ?? "")}>
                        {field(event.data, "status") === "retrying" ? "Retrying" : runStatusLabel(runEventStatus(event) ?? "")}
                      </span>{" "}
                    </>
                  )}
                  <button type="button" className="button button--ghost button--small" onClick={() => onOpenRun(event.run!.id)}>
                    View run
                  </button>
                </>
              )}
              <div className="event__meta">{formatTime(event.createdAt)}</div>
            </div>
          )}
        </li>
      ))}
    </ol>
  );
}

function CommentBlock({
  taskId,
  comment,
  replies,
  mentionables,
  onChanged,
}: {
  taskId: string;
  comment: CommentFieldsFragment;
  replies: CommentFieldsFragment[];
  mentionables: Mentionable[];
  onChanged: () => void;
}) {
  const [replying, setReplying] = useState(false);
  return (
    <article aria-label={`Comment by ${personName(comment.author)}`}>
      <CommentBody comment={comment} />
      <div className="reactions">
        <Reactions comment={comment} />
        <Can permission="comment.post">
          <button type="button" className="button button--ghost button--small" onClick={() => setReplying((r) => !r)}>
            Reply
          </button>
        </Can>
      </div>
      {(replies.length > 0 || replying) && (
        <ol className="thread" aria-label="Replies">
          {replies.map((reply) => (
            <li key={reply.id} className="event event--comment">
              <CommentBody comment={reply} />
              <div className="reactions">
                <Reactions comment={reply} />
              </div>
            </li>
          ))}
          {replying && (
            <li>
              <Composer
                taskId={taskId}
                parentId={comment.id}
                mentionables={mentionables}
                autoFocus
                onPosted={() => {
                  setReplying(false);
                  onChanged();
                }}
              />
            </li>
          )}
        </ol>
      )}
    </article>
  );
}

function CommentBody({ comment }: { comment: CommentFieldsFragment }) {
  const { label, text } = commentMarker(comment.body);
  return (
    <>
      <div className="event__meta">
        <strong>{personName(comment.author)}</strong> · {formatTime(comment.createdAt)}
        {label && (
          <>
            {" "}
            <span className={label === "Blocked" ? "badge badge--danger" : "badge badge--warn"} data-testid="comment-marker">
              {label}
            </span>
          </>
        )}
      </div>
      <div className={label === "Blocked" ? "comment__body comment__body--blocked" : "comment__body"}>{text}</div>
    </>
  );
}

function Reactions({ comment }: { comment: CommentFieldsFragment }) {
  const [{ error, fetching }, react] = useMutation(ReactDocument);
  const { can } = useWorkspace();
  const shown = new Map(comment.reactions.map((r) => [r.emoji, r]));
  if (!can("comment.react")) {
    return (
      <>
        {comment.reactions.map((r) => (
          <span key={r.emoji} className="badge">
            {r.emoji} {r.count}
          </span>
        ))}
      </>
    );
  }
  return (
    <>
      {comment.reactions.map((r) => (
          <button
            key={r.emoji}
            type="button"
            className="button button--small reaction"
            aria-pressed={r.viewerReacted}
            aria-label={`${r.emoji} ${r.count}`}
            disabled={fetching}
            onClick={() => react({ commentId: comment.id, emoji: r.emoji, on: !r.viewerReacted })}
          >
            {r.emoji} {r.count}
          </button>
      ))}
        {QUICK_REACTIONS.filter((e) => !shown.has(e)).map((emoji) => (
          <button
            key={emoji}
            type="button"
            className="button button--ghost button--small reaction"
            aria-label={`React ${emoji}`}
            disabled={fetching}
            onClick={() => react({ commentId: comment.id, emoji, on: true })}
          >
            {emoji}
          </button>
        ))}
      {error && <ErrorMessage error={error} compact />}
    </>
  );
}
