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
    inbox(workspaceId: $workspaceId, status: OPEN, first: 100) {
      edges {
        node {
        id
        kind
        status
        title
        body
        createdAt
        readAt
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

const UpdateInboxItemDocument = graphql(`
  mutation UpdateInboxItem($id: ID!, $read: Boolean, $resolved: Boolean) {
    updateInboxItem(id: $id, read: $read, resolved: $resolved) {
      id
      status
      readAt
    }
  }
`);

const AnswerInboxItemDocument = graphql(`
  mutation AnswerInboxItem($id: ID!, $answer: String!) {
    answerInboxItem(id: $id, answer: $answer) {
      id
      status
    }
  }
`);

const DecideApprovalDocument = graphql(`
  mutation DecideApproval($id: ID!, $approve: Boolean!, $note: String!) {
    decideApproval(id: $id, approve: $approve, note: $note) {
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
  const [note, setNote] = useState("");
  const [updating, updateItem] = useMutation(UpdateInboxItemDocument);
  const [answering, answerItem] = useMutation(AnswerInboxItemDocument);
  const [deciding, decide] = useMutation(DecideApprovalDocument);
  const [update, requestUpdate] = useMutation(RequestMachineUpdateDocument);
  const machineId = dataField(item.data, "machineId");
  const unread = !item.readAt;

  async function settle(outcome: Promise<{ error?: unknown }>) {
    const result = await outcome;
    if (!result.error) onDone();
  }
  const busy = updating.fetching || answering.fetching || deciding.fetching || update.fetching;
  const error = updating.error ?? answering.error ?? deciding.error ?? update.error;
  const dismiss = (label: string) => (
    <button type="button" className="button" disabled={busy} onClick={() => settle(updateItem({ id: item.id, resolved: true }))}>
      {updating.fetching ? "Saving…" : label}
    </button>
  );
  return (
    <li className={unread ? "panel inbox-item inbox-item--unread" : "panel inbox-item"} data-kind={item.kind} aria-label={item.title}>
      <div className="page__header">
        <span className="badge">{KIND_LABELS[item.kind] ?? item.kind}</span>
        <strong>{item.title}</strong>
        {unread && <span className="badge badge--warn">New</span>}
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
      {error && <ErrorMessage error={error} compact />}
      <Can permission="inbox.act">
        {(item.kind === "QUESTION" || item.kind === "BLOCKED") && item.task ? (
          <form
            className="form"
            onSubmit={(e) => {
              e.preventDefault();
              if (answer.trim()) void settle(answerItem({ id: item.id, answer: answer.trim() }));
            }}
          >
            <label className="field">
              <span>
                {item.kind === "BLOCKED" ? "What unblocks it" : "Your answer"}
                {item.agent ? ` (to ${item.agent.name})` : ""}
              </span>
              <textarea rows={2} value={answer} onChange={(e) => setAnswer(e.target.value)} />
            </label>
            <div className="form__actions">
              <button type="submit" className="button button--primary" disabled={busy || !answer.trim()}>
                {answering.fetching ? "Sending…" : "Answer"}
              </button>
              {dismiss("Dismiss")}
            </div>
          </form>
        ) : item.kind === "APPROVAL" && item.task ? (
          <div className="form">
            <label className="field">
              <span>Note (optional){item.agent ? ` to ${item.agent.name}` : ""}</span>
              <textarea rows={2} value={note} onChange={(e) => setNote(e.target.value)} />
            </label>
            <div className="form__actions">
              <button
                type="button"
                className="button button--danger"
                disabled={busy}
                onClick={() => settle(decide({ id: item.id, approve: false, note: note.trim() }))}
              >
                Deny
              </button>
              <button
                type="button"
                className="button button--primary"
                disabled={busy}
                onClick={() => settle(decide({ id: item.id, approve: true, note: note.trim() }))}
              >
                {deciding.fetching ? "Sending…" : "Approve"}
              </button>
            </div>
          </div>
        ) : item.kind === "UPDATE_NUDGE" && machineId ? (
          <div className="form__actions">
            <Can permission="machine.manage">
              <button
                type="button"
                className="button button--primary"
                disabled={busy}
                // The server closes the nudge itself once the update is queued.
                onClick={() => settle(requestUpdate({ machineId }))}
              >
                {update.fetching ? "Queueing update…" : "Update now"}
              </button>
            </Can>
            <Link className="button" to={`/w/${workspace.id}/machines#machine-${machineId}`}>
              Open the machine
            </Link>
            {dismiss("Dismiss")}
          </div>
        ) : item.kind === "RUNTIME_STALE" || item.kind === "UPDATE_NUDGE" ? (
          <div className="form__actions">
            <Link
              className="button button--primary"
              to={machineId ? `/w/${workspace.id}/machines#machine-${machineId}` : `/w/${workspace.id}/machines`}
            >
              Open the machine
            </Link>
            {dismiss("Dismiss")}
          </div>
        ) : (
          <div className="form__actions">{dismiss("Mark done")}</div>
        )}
        <div className="form__actions">
          <button
            type="button"
            className="button button--ghost button--small"
            disabled={busy}
            onClick={() => settle(updateItem({ id: item.id, read: unread }))}
          >
            {unread ? "Mark read" : "Mark unread"}
          </button>
        </div>
      </Can>
    </li>
  );
}

function dataField(data: unknown, key: string): string | null {
  if (!data || typeof data !== "object") return null;
  const value = (data as Record<string, unknown>)[key];
  return typeof value === "string" && value ? value : null;
}
