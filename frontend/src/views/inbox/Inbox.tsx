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

const InboxDocument = graphql(`
  query Inbox($workspaceId: ID!) {
    workspace(id: $workspaceId) {
      id
      inbox(status: OPEN) {
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
        agent {
          id
          name
        }
        machine {
          id
          name
        }
      }
    }
  }
`);

const ResolveInboxItemDocument = graphql(`
  mutation ResolveInboxItem($id: ID!, $action: String!, $answer: String) {
    resolveInboxItem(id: $id, action: $action, answer: $answer) {
      id
      status
    }
  }
`);

type Item = NonNullable<InboxQuery["workspace"]>["inbox"][number];

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
  const items = data?.workspace?.inbox ?? [];
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
  const [update, requestUpdate] = useMutation(RequestMachineUpdateDocument);
  async function act(action: string, text?: string) {
    const result = await resolve({ id: item.id, action, answer: text ?? null });
    if (!result.error) onDone();
  }
  const busy = resolution.fetching || update.fetching;
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
      {(resolution.error || update.error) && <ErrorMessage error={resolution.error ?? update.error} compact />}
      <Can permission="inbox.act">
        {item.kind === "QUESTION" && (
          <form
            className="form"
            onSubmit={(e) => {
              e.preventDefault();
              if (answer.trim()) void act("answer", answer.trim());
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
        )}
        {item.kind === "APPROVAL" && (
          <div className="form__actions">
            <button type="button" className="button button--danger" disabled={busy} onClick={() => act("deny")}>
              Deny
            </button>
            <button type="button" className="button button--primary" disabled={busy} onClick={() => act("approve")}>
              Approve
            </button>
          </div>
        )}
        {item.kind === "UPDATE_NUDGE" && item.machine && (
          <div className="form__actions">
            <button
              type="button"
              className="button button--primary"
              disabled={busy}
              onClick={async () => {
                const result = await requestUpdate({ machineId: item.machine!.id });
                if (!result.error) await act("dismiss");
              }}
            >
              {update.fetching ? "Queueing…" : `Update ${item.machine.name} now`}
            </button>
          </div>
        )}
        {item.kind === "RUNTIME_STALE" && (
          <div className="form__actions">
            <Link className="button" to={`/w/${workspace.id}/machines`}>
              Open machines
            </Link>
            <button type="button" className="button" disabled={busy} onClick={() => act("dismiss")}>
              Dismiss
            </button>
          </div>
        )}
        {(item.kind === "MENTION" || item.kind === "BLOCKED") && (
          <div className="form__actions">
            <button type="button" className="button" disabled={busy} onClick={() => act("dismiss")}>
              Mark done
            </button>
          </div>
        )}
      </Can>
    </li>
  );
}
