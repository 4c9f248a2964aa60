import { useCallback, useMemo, useState } from "react";
import { useSearchParams } from "react-router";
import { useQuery } from "urql";
import type { TaskFilter, TaskPriority, TaskStatus } from "../../gql/graphql";
import { useWorkspace } from "../../app/workspace";
import { EmptyState } from "../../components/EmptyState";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading, ProgressBar } from "../../components/Loading";
import { BoardOptionsDocument } from "./queries";
import { TaskCard } from "./TaskCard";
import { NO_OPTIONS, parseAssignee, toAssignOptions, type AssignOptions } from "./options";
import { AssigneeSelect, TaskEditor } from "./TaskEditor";
import { PRIORITIES, STATUSES } from "./taskMeta";
import { useBoardTasks, type BoardTask } from "./useBoardTasks";

/** Tasks by status, live; filters live in the URL so a filtered board can be shared. */
export function Board() {
  const { workspace, can } = useWorkspace();
  const [params, setParams] = useSearchParams();
  const filter = useMemo<TaskFilter>(() => {
    const f: TaskFilter = {};
    const assignee = params.get("assignee");
    const project = params.get("project");
    const priority = params.get("priority");
    if (assignee) {
      const who = parseAssignee(assignee);
      if (who.userId) f.assigneeUserId = who.userId;
      if (who.agentId) f.assigneeAgentId = who.agentId;
    }
    if (project) f.projectId = project;
    if (priority) f.priority = [priority as TaskPriority];
    return f;
  }, [params]);

  const board = useBoardTasks(workspace.id, filter);
  // Filters and editors need these; fetch them once the tasks are in, off the first paint's path.
  const [optionsWanted, setOptionsWanted] = useState(false);
  if (!optionsWanted && !board.loading && !board.loadingMore) setOptionsWanted(true);
  const [{ data: optionsData, error: optionsError }] = useQuery({
    query: BoardOptionsDocument,
    variables: { workspaceId: workspace.id },
    pause: !optionsWanted,
  });
  const options: AssignOptions = useMemo(
    () => (optionsData ? toAssignOptions(optionsData) : NO_OPTIONS),
    [optionsData],
  );
  const [editing, setEditing] = useState<{ task?: BoardTask; status?: TaskStatus } | null>(null);
  const canEdit = can("task.edit");
  const onEdit = useCallback((task: BoardTask) => setEditing({ task }), []);

  const columns = useMemo(() => {
    const byStatus = new Map<string, BoardTask[]>(STATUSES.map((s) => [s.value, []]));
    for (const task of board.tasks) byStatus.get(task.status)?.push(task);
    return byStatus;
  }, [board.tasks]);

  function setFilter(name: string, value: string) {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    setParams(next, { replace: true });
  }

  return (
    <section className="page page--wide" aria-labelledby="board-title">
      <ProgressBar active={board.loadingMore} label="Loading more tasks" />
      <div className="page__header">
        <h1 id="board-title">Board</h1>
        <span className="muted" data-testid="task-count">
          {board.loading ? "" : `${board.tasks.length} of ${board.totalCount} tasks`}
        </span>
        {can("task.create") && (
          <button type="button" className="button button--primary" onClick={() => setEditing({})}>
            New task
          </button>
        )}
      </div>
      <div className="filters" role="group" aria-label="Filters">
        <AssigneeSelect
          label="Filter by assignee"
          emptyLabel="Any assignee"
          value={params.get("assignee") ?? ""}
          onChange={(v) => setFilter("assignee", v)}
          options={options}
        />
        <select
          aria-label="Filter by project"
          value={filter.projectId ?? ""}
          onChange={(e) => setFilter("project", e.target.value)}
        >
          <option value="">Any project</option>
          {options.projects.map((p) => (
            <option key={p.id} value={p.id}>
              {p.name}
            </option>
          ))}
        </select>
        <select
          aria-label="Filter by priority"
          value={params.get("priority") ?? ""}
          onChange={(e) => setFilter("priority", e.target.value)}
        >
          <option value="">Any priority</option>
          {PRIORITIES.map((p) => (
            <option key={p.value} value={p.value}>
              {p.label}
            </option>
          ))}
        </select>
        {Object.keys(filter).length > 0 && (
          <button type="button" className="button button--ghost" onClick={() => setParams({}, { replace: true })}>
            Clear filters
          </button>
        )}
      </div>
      {optionsError && <ErrorMessage error={optionsError} compact />}
      {board.error !== null && <ErrorMessage error={board.error} onRetry={board.reload} />}
      {board.loading ? (
        <Loading label="Loading the board…" />
      ) : board.tasks.length === 0 && board.error === null ? (
        <EmptyState title={Object.keys(filter).length ? "No task matches these filters" : "No tasks yet"}>
          {can("task.create") && !Object.keys(filter).length && "Create the first one with “New task”."}
        </EmptyState>
      ) : (
        <div className="board" data-testid="board">
          {STATUSES.map((status) => {
            const tasks = columns.get(status.value) ?? [];
            return (
              <section key={status.value} className="column" aria-label={status.label} data-status={status.value}>
                <h2 className="column__title">
                  {status.label} <span className="column__count">{tasks.length}</span>
                </h2>
                <ul className="column__list">
                  {tasks.map((task) => (
                    <TaskCard
                      key={task.id}
                      task={task}
                      workspaceId={workspace.id}
                      onEdit={canEdit ? onEdit : undefined}
                    />
                  ))}
                </ul>
              </section>
            );
          })}
        </div>
      )}
      {editing && (
        <TaskEditor
          workspaceId={workspace.id}
          task={editing.task}
          initialStatus={editing.status}
          options={options}
          onDone={(task) => {
            if (task) board.upsert(task);
            setEditing(null);
          }}
        />
      )}
    </section>
  );
}
