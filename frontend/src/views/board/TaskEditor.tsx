import { useEffect, useRef, useState, type FormEvent } from "react";
import { useClient } from "urql";
import type { CombinedError } from "@urql/core";
import type { TaskPriority, TaskStatus } from "../../gql/graphql";
import { ErrorMessage } from "../../components/ErrorMessage";
import { assigneeValue, parseAssignee, type AssignOptions } from "./options";
import {
  AssignTaskDocument,
  CreateTaskDocument,
  SetTaskPriorityDocument,
  SetTaskStatusDocument,
  UpdateTaskDocument,
} from "./queries";
import { PRIORITIES, STATUSES } from "./taskMeta";
import type { BoardTask } from "./useBoardTasks";

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
  const [assignee, setAssignee] = useState(assigneeValue(task?.assignee));
  const [localError, setLocalError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<CombinedError | null>(null);
  const client = useClient();
  const dialog = useRef<HTMLDivElement>(null);

  // Read while rendering, before autoFocus moves focus into the dialog: that is the opener.
  const opener = useRef(document.activeElement as HTMLElement | null);
  useEffect(() => {
    const previous = opener.current;
    return () => previous?.focus?.();
  }, []);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!title.trim()) {
      setLocalError("A task needs a title.");
      return;
    }
    setLocalError(null);
    setError(null);
    setSaving(true);
    try {
      const saved = task ? await saveEdits(task) : await saveNew();
      if (saved) onDone(saved);
    } finally {
      setSaving(false);
    }
  }

  async function saveNew(): Promise<BoardTask | null> {
    const who = parseAssignee(assignee);
    const result = await client
      .mutation(CreateTaskDocument, {
        input: {
          workspaceId,
          title: title.trim(),
          description,
          status,
          priority,
          projectId: projectId || null,
          assigneeUserId: who.userId,
          assigneeAgentId: who.agentId,
        },
      })
      .toPromise();
    if (result.error) setError(result.error);
    return result.data?.createTask ?? null;
  }

  /** Each kind of change is its own mutation (and its own timeline event); send only what changed. */
  async function saveEdits(original: BoardTask): Promise<BoardTask | null> {
    let latest: BoardTask = original;
    const steps: (() => Promise<{ error?: CombinedError; task?: BoardTask }>)[] = [];
    const projectChanged = (original.project?.id ?? "") !== projectId;
    if (original.title !== title.trim() || original.description !== description || projectChanged) {
      steps.push(async () => {
        const r = await client
          .mutation(UpdateTaskDocument, {
            input: {
              taskId: original.id,
              title: title.trim(),
              description,
              projectId: projectId || null,
              clearProject: projectChanged && !projectId,
            },
          })
          .toPromise();
        return { error: r.error, task: r.data?.updateTask };
      });
    }
    if (original.status !== status) {
      steps.push(async () => {
        const r = await client.mutation(SetTaskStatusDocument, { taskId: original.id, status }).toPromise();
        return { error: r.error, task: r.data?.setTaskStatus };
      });
    }
    if (original.priority !== priority) {
      steps.push(async () => {
        const r = await client.mutation(SetTaskPriorityDocument, { taskId: original.id, priority }).toPromise();
        return { error: r.error, task: r.data?.setTaskPriority };
      });
    }
    if (assigneeValue(original.assignee) !== assignee) {
      steps.push(async () => {
        const who = parseAssignee(assignee);
        const r = await client
          .mutation(AssignTaskDocument, { input: { taskId: original.id, ...who } })
          .toPromise();
        return { error: r.error, task: r.data?.assignTask };
      });
    }
    for (const step of steps) {
      const { error: stepError, task: next } = await step();
      if (stepError) {
        setError(stepError);
        return null;
      }
      if (next) latest = next;
    }
    return latest;
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
              <AssigneeSelect value={assignee} onChange={setAssignee} options={options} />
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
            <option key={a.id} value={`agent:${a.id}`}>
              {a.name} (agent)
            </option>
          ))}
        </optgroup>
      )}
      <optgroup label="People">
        {options.members.map((m) => (
          <option key={m.id} value={`user:${m.id}`}>
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
