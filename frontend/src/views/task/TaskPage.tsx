import { useEffect, useMemo, useState } from "react";
import { Link, useParams } from "react-router";
import { useQuery, useSubscription } from "urql";
import { useWorkspace, Can } from "../../app/workspace";
import { EmptyState } from "../../components/EmptyState";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { hasCode } from "../../lib/errors";
import { personName } from "../../lib/format";
import { toAssignOptions } from "../board/options";
import { BoardOptionsDocument } from "../board/queries";
import { TaskEditor } from "../board/TaskEditor";
import { priorityLabel, statusLabel } from "../board/taskMeta";
import { Composer, type Mentionable } from "./Composer";
import { TaskPageDocument, TaskTimelineDocument } from "./queries";
import { Runs } from "./Runs";
import { Timeline } from "./Timeline";
import { Transcript } from "./Transcript";
import { ACTIVE_RUN_STATUSES } from "./runMeta";

/** A task: details, timeline and composer on the left; runs and the live transcript on the right. */
export function TaskPage() {
  const { taskId = "" } = useParams();
  const { workspace } = useWorkspace();
  const [{ data, fetching, error }, refetch] = useQuery({
    query: TaskPageDocument,
    variables: { taskId, workspaceId: workspace.id },
  });
  const [{ data: optionsData }] = useQuery({ query: BoardOptionsDocument, variables: { workspaceId: workspace.id } });
  const options = useMemo(() => toAssignOptions(optionsData), [optionsData]);
  const reload = () => refetch({ requestPolicy: "network-only" });
  // Anything new on the timeline (a comment, a run moving on, an edit): load the page's data again.
  const [live] = useSubscription({ query: TaskTimelineDocument, variables: { taskId } });
  useEffect(() => {
    if (live.data) reload();
  }, [live.data]);

  const [selectedRun, setSelectedRun] = useState<string | null>(null);
  const [editing, setEditing] = useState(false);
  const task = data?.task;
  const runs = useMemo(() => (data?.runs.edges ?? []).map((e) => e.node), [data?.runs]);
  // Show the newest active run's transcript by default, else the newest run's.
  const defaultRun = useMemo(() => {
    const ordered = [...runs].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    return (ordered.find((r) => ACTIVE_RUN_STATUSES.has(r.status)) ?? ordered[0])?.id ?? null;
  }, [runs]);
  const shownRun = selectedRun ?? defaultRun;
  const mentionables = useMemo<Mentionable[]>(
    () => [
      ...options.agents.map((a) => ({ ...a, kind: "agent" as const })),
      ...options.teams.map((t) => ({ ...t, kind: "team" as const })),
    ],
    [options],
  );

  const names = useMemo(
    () =>
      new Map<string, string>([
        ...options.members.map((m) => [m.id, m.name || m.email] as [string, string]),
        ...options.agents.map((a) => [a.id, a.name] as [string, string]),
      ]),
    [options],
  );

  if (fetching && !data) return <Loading label="Loading the task…" />;
  if (hasCode(error, "NOT_FOUND") || (data && !task)) {
    return (
      <div className="page">
        <EmptyState title="This task is not available">
          It was removed or you cannot see it. <Link to={`/w/${workspace.id}/board`}>Back to the board</Link>
        </EmptyState>
      </div>
    );
  }
  if (!task) return <div className="page"><ErrorMessage error={error} onRetry={reload} /></div>;

  const events = (data?.timeline.edges ?? []).map((e) => e.node);
  return (
    <div className="page page--wide">
      <nav aria-label="Breadcrumb" className="muted">
        <Link to={`/w/${workspace.id}/board`}>Board</Link> / #{task.number}
      </nav>
      {error && <ErrorMessage error={error} compact onRetry={reload} />}
      <div className="split">
        <section aria-labelledby="task-title">
          <div className="page__header">
            <h1 id="task-title">{task.title}</h1>
            <Can permission="task.edit">
              <button type="button" className="button" onClick={() => setEditing(true)}>
                Edit
              </button>
            </Can>
          </div>
          <dl className="kv panel">
            <dt>Status</dt>
            <dd data-testid="task-status">{statusLabel(task.status)}</dd>
            <dt>Priority</dt>
            <dd>{priorityLabel(task.priority)}</dd>
            <dt>Assignee</dt>
            <dd data-testid="task-assignee">{task.assignee ? personName(task.assignee) : "Unassigned"}</dd>
            <dt>Project</dt>
            <dd>{task.project?.name ?? "None"}</dd>
          </dl>
          {task.description && <div className="panel comment__body">{task.description}</div>}
          {task.summary && (
            <section className="panel summary" aria-labelledby="task-summary" data-testid="task-summary">
              <h2 id="task-summary">Summary</h2>
              <div className="comment__body">{task.summary}</div>
            </section>
          )}
          <h2>Timeline</h2>
          <Timeline
            taskId={task.id}
            events={events}
            names={names}
            mentionables={mentionables}
            onChanged={reload}
            onOpenRun={setSelectedRun}
          />
          <Can permission="comment.post">
            <Composer taskId={task.id} mentionables={mentionables} onPosted={reload} />
          </Can>
        </section>
        <aside aria-label="Runs">
          <h2>Runs</h2>
          <Runs runs={runs} selected={shownRun} onSelect={setSelectedRun} onChanged={reload} />
          {shownRun && (
            <>
              <h2>Transcript</h2>
              <Transcript key={shownRun} runId={shownRun} />
            </>
          )}
        </aside>
      </div>
      {editing && (
        <TaskEditor
          workspaceId={workspace.id}
          task={task}
          options={options}
          onDone={() => {
            setEditing(false);
            reload();
          }}
        />
      )}
    </div>
  );
}
