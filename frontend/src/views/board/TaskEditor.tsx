import { useEffect, useRef, useState, type FormEvent } from "react";
import { useMutation } from "urql";
import type { TaskPriority, TaskStatus } from "../../gql/graphql";
import { ErrorMessage } from "../../components/ErrorMessage";
import { CreateTaskDocument, UpdateTaskDocument } from "./queries";
import { PRIORITIES, STATUSES } from "./taskMeta";
import type { BoardTask } from "./useBoardTasks";

export interface AssignOptions {
  members: readonly { id: string; name: string; email: string }[];
  agents: readonly { id: string; name: string }[];
  projects: readonly { id: string; name: string }[];
}

interface Props {
  workspaceId: string;
  /** Absent: create a new task. */
  task?: BoardTask;
  initialStatus?: TaskStatus;
  options: AssignOptions;
  onDone: (task: BoardTask | null) => void;
}

/** Create or edit a task in a modal dialog: title, description, status, priority, project, assignee. */
export function TaskEditor({ workspaceId, task, initialStatus, options, onDone }: Props) {
  const [title, setTitle] = useState(task?.title ?? "");
  const [description, setDescription] = useState(task?.description ?? "");
  const [status, setStatus] = useState<TaskStatus>(task?.status ?? initialStatus ?? "TODO");
  const [priority, setPriority] = useState<TaskPriority>(task?.priority ?? "NONE");
  const [projectId, setProjectId] = useState(task?.project?.id ?? "");
  const [assigneeId, setAssigneeId] = useState(task?.assignee?.id ?? "");
  const [localError, setLocalError] = useState<string | null>(null);
  const [created, create] = useMutation(CreateTaskDocument);
  const [updated, update] = useMutation(UpdateTaskDocument);
  const dialog = useRef<HTMLDivElement>(null);
  const saving = created.fetching || updated.fetching;
  const error = task ? updated.error : created.error;

  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    return () => previous?.focus?.();
  }, []);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!title.trim()) {
      setLocalError("A task needs a title.");
      return;
    }
    setLocalError(null);
    const fields = {
      title: title.trim(),
      description,
      status,
      priority,
      projectId: projectId || null,
      assigneeId: assigneeId || null,
    };
    if (task) {
      const result = await update({ input: { id: task.id, ...fields } });
      if (result.data) onDone(result.data.updateTask);
    } else {
      const result = await create({ input: { workspaceId, ...fields } });
      if (result.data) onDone(result.data.createTask);
    }
  }

  return (
    <div className="modal" role="presentation" onMouseDown={(e) => e.target === e.currentTarget && onDone(null)}>
      <div
        ref={dialog}
        className="modal__dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby="task-editor-title"
        onKeyDown={(e) => {
          if (e.key === "Escape") onDone(null);
          if (e.key === "Tab") trapFocus(e, dialog.current);
        }}
      >
        <form onSubmit={submit} className="form">
          <h2 id="task-editor-title">{task ? `Edit task #${task.number}` : "New task"}</h2>
          <label className="field">
            <span>Title</span>
            <input autoFocus value={title} onChange={(e) => setTitle(e.target.value)} maxLength={500} />
          </label>
          <label className="field">
            <span>Description</span>
            <textarea rows={5} value={description} onChange={(e) => setDescription(e.target.value)} />
          </label>
          <div className="form__row">
            <label className="field">
              <span>Status</span>
              <select value={status} onChange={(e) => setStatus(e.target.value as TaskStatus)}>
                {STATUSES.map((s) => (
                  <option key={s.value} value={s.value}>
                    {s.label}
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span>Priority</span>
              <select value={priority} onChange={(e) => setPriority(e.target.value as TaskPriority)}>
                {PRIORITIES.map((p) => (
                  <option key={p.value} value={p.value}>
                    {p.label}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <div className="form__row">
            <label className="field">
              <span>Project</span>
              <select value={projectId} onChange={(e) => setProjectId(e.target.value)}>
                <option value="">No project</option>
                {options.projects.map((p) => (
                  <option key={p.id} value={p.id}>
                    {p.name}
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span>Assignee</span>
              <AssigneeSelect value={assigneeId} onChange={setAssigneeId} options={options} />
            </label>
          </div>
          {localError && (
            <p className="error error--compact" role="alert">
              {localError}
            </p>
          )}
          {error && <ErrorMessage error={error} compact />}
          <div className="form__actions">
            <button type="button" className="button" onClick={() => onDone(null)}>
              Cancel
            </button>
            <button type="submit" className="button button--primary" disabled={saving}>
              {saving ? "Saving…" : task ? "Save" : "Create task"}
            </button>
          </div>
        </form>
      </div>
    </div>
  );
}

/** People and agents in one list, grouped, so a task can go to either. */
export function AssigneeSelect({
  value,
  onChange,
  options,
  emptyLabel = "Unassigned",
  label,
}: {
  value: string;
  onChange: (id: string) => void;
  options: Pick<AssignOptions, "members" | "agents">;
  emptyLabel?: string;
  label?: string;
}) {
  return (
    <select value={value} onChange={(e) => onChange(e.target.value)} aria-label={label}>
      <option value="">{emptyLabel}</option>
      {options.agents.length > 0 && (
        <optgroup label="Agents">
          {options.agents.map((a) => (
            <option key={a.id} value={a.id}>
              {a.name} (agent)
            </option>
          ))}
        </optgroup>
      )}
      <optgroup label="People">
        {options.members.map((m) => (
          <option key={m.id} value={m.id}>
            {m.name || m.email}
          </option>
        ))}
      </optgroup>
    </select>
  );
}

/** Keeps Tab inside an open dialog. */
export function trapFocus(event: React.KeyboardEvent, container: HTMLElement | null): void {
  if (!container) return;
  const focusable = container.querySelectorAll<HTMLElement>(
    'a[href], button:not([disabled]), input, select, textarea, [tabindex]:not([tabindex="-1"])',
  );
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  if (!first || !last) return;
  if (event.shiftKey && document.activeElement === first) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault();
    first.focus();
  }
}
