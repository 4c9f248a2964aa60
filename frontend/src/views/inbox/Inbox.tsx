import { useState } from "react";
import { Link } from "react-router";
import { useMutation, useQuery } from "urql";
import { graphql } from "../../gql";
import type { InboxQuery } from "../../gql/graphql";
import { Can, useWorkspace } from "../../app/workspace";
import { EmptyState } from "../../components/EmptyState";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { formatTime } from "../../lib/format";
import { RequestMachineUpdateDocument } from "../machines/queries";
import { PostCommentDocument } from "../task/queries";

const InboxDocument = graphql(`
  query Inbox($workspaceId: ID!) {
    inbox(workspaceId: $workspaceId, status: OPEN, first: 100) {
      edges {
        node {
        id
        kind
        status
        title
        body
        createdAt
        task {
          id
          number
          title
        }
        data
        agent {
          id
          name
        }
        }
      }
    }
  }
`);

const ResolveInboxItemDocument = graphql(`
  mutation ResolveInboxItem($id: ID!) {
    updateInboxItem(id: $id, resolved: true) {
      id
      status
    }
  }
`);

type Item = InboxQuery["inbox"]["edges"][number]["node"];

const KIND_LABELS: Record<string, string> = {
  QUESTION: "Question",
  APPROVAL: "Approval request",
  MENTION: "Mention",
  RUNTIME_STALE: "Runtime offline",
  UPDATE_NUDGE: "CLI update",
  BLOCKED: "Blocked",
};

/** What needs the viewer: questions to answer, approvals, stale runtimes, update nudges. */
export function Inbox() {
  const { workspace } = useWorkspace();
  const [{ data, fetching, error }, refetch] = useQuery({ query: InboxDocument, variables: { workspaceId: workspace.id } });
  const reload = () => refetch({ requestPolicy: "network-only" });
  if (fetching && !data) return <Loading label="Loading your inbox…" />;
  const items = (data?.inbox.edges ?? []).map((e) => e.node);
  return (
    <section className="page" aria-labelledby="inbox-title">
      <div className="page__header">
        <h1 id="inbox-title">Inbox</h1>
      </div>
      {error && <ErrorMessage error={error} onRetry={reload} />}
      {items.length === 0 && !error ? (
        <EmptyState title="Nothing needs you right now" />
      ) : (
        <ul className="list">
          {items.map((item) => (
            <InboxCard key={item.id} item={item} onDone={reload} />
          ))}
        </ul>
      )}
    </section>
  );
}

function InboxCard({ item, onDone }: { item: Item; onDone: () => void }) {
  const { workspace } = useWorkspace();
  const [answer, setAnswer] = useState("");
  const [resolution, resolve] = useMutation(ResolveInboxItemDocument);
  const [reply, postReply] = useMutation(PostCommentDocument);
  const [update, requestUpdate] = useMutation(RequestMachineUpdateDocument);
  const machineId = dataField(item.data, "machineId");

  /** Answers and decisions go to the agent as a comment on the task (tagging it), then the item closes. */
  async function respond(text: string | null) {
    if (text && item.task) {
      const posted = await postReply({
        input: { taskId: item.task.id, body: text, agentIds: item.agent ? [item.agent.id] : [] },
      });
      if (posted.error) return;
    }
    const result = await resolve({ id: item.id });
    if (!result.error) onDone();
  }
  const busy = resolution.fetching || reply.fetching || update.fetching;
  return (
    <li className="panel" data-kind={item.kind} aria-label={item.title}>
      <div className="page__header">
        <span className="badge">{KIND_LABELS[item.kind] ?? item.kind}</span>
        <strong>{item.title}</strong>
        <span className="muted">{formatTime(item.createdAt)}</span>
      </div>
      {item.body && <p className="comment__body">{item.body}</p>}
      {item.task && (
        <p>
          <Link to={`/w/${workspace.id}/tasks/${item.task.id}`}>
            #{item.task.number} {item.task.title}
          </Link>
        </p>
      )}
      {(resolution.error || reply.error || update.error) && (
        <ErrorMessage error={resolution.error ?? reply.error ?? update.error} compact />
      )}
      <Can permission="inbox.act">
        {item.kind === "QUESTION" && item.task ? (
          <form
            className="form"
            onSubmit={(e) => {
              e.preventDefault();
              if (answer.trim()) void respond(answer.trim());
            }}
          >
            <label className="field">
              <span>Your answer{item.agent ? ` to ${item.agent.name}` : ""}</span>
              <textarea rows={2} value={answer} onChange={(e) => setAnswer(e.target.value)} />
            </label>
            <div className="form__actions">
              <button type="submit" className="button button--primary" disabled={busy || !answer.trim()}>
                Answer
              </button>
            </div>
          </form>
        ) : item.kind === "APPROVAL" && item.task ? (
          <div className="form__actions">
            <button type="button" className="button button--danger" disabled={busy} onClick={() => respond("Denied.")}>
              Deny
            </button>
            <button type="button" className="button button--primary" disabled={busy} onClick={() => respond("Approved.")}>
              Approve
            </button>
          </div>
        ) : item.kind === "UPDATE_NUDGE" && machineId ? (
          <div className="form__actions">
            <Can permission="machine.manage">
              <button
                type="button"
                className="button button--primary"
                disabled={busy}
                onClick={async () => {
                  // The server closes the nudge itself once the update is queued.
                  const result = await requestUpdate({ machineId });
                  if (!result.error) onDone();
                }}
              >
                {update.fetching ? "Queueing update…" : "Update now"}
              </button>
            </Can>
            <button type="button" className="button" disabled={busy} onClick={() => respond(null)}>
              Dismiss
            </button>
          </div>
        ) : item.kind === "RUNTIME_STALE" || item.kind === "UPDATE_NUDGE" ? (
          <div className="form__actions">
            <Link className="button button--primary" to={`/w/${workspace.id}/machines`}>
              Open machines
            </Link>
            <button type="button" className="button" disabled={busy} onClick={() => respond(null)}>
              Dismiss
            </button>
          </div>
        ) : (
          <div className="form__actions">
            <button type="button" className="button" disabled={busy} onClick={() => respond(null)}>
              Mark done
            </button>
          </div>
        )}
      </Can>
    </li>
  );
}

function dataField(data: unknown, key: string): string | null {
  if (!data || typeof data !== "object") return null;
  const value = (data as Record<string, unknown>)[key];
  return typeof value === "string" && value ? value : null;
}
