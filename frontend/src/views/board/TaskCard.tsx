import { memo } from "react";
import { Link } from "react-router";
import { priorityLabel } from "./taskMeta";
import type { BoardTask } from "./useBoardTasks";

interface Props {
  task: BoardTask;
  workspaceId: string;
  onEdit?: (task: BoardTask) => void;
}

/** One task on the board; the title links to the task page. Memoised: 500 cards re-render rarely. */
export const TaskCard = memo(function TaskCard({ task, workspaceId, onEdit }: Props) {
  const assignee = task.assignee
    ? task.assignee.__typename === "Agent"
      ? `${task.assignee.name} (agent)`
      : task.assignee.name || task.assignee.email
    : "Unassigned";
  return (
    <li className="card" data-task-id={task.id} data-priority={task.priority}>
      <Link className="card__title" to={`/w/${workspaceId}/tasks/${task.id}`}>
        <span className="card__number">#{task.number}</span> {task.title}
      </Link>
      <div className="card__meta">
        {task.priority !== "NONE" && (
          <span className={`badge badge--${task.priority.toLowerCase()}`}>{priorityLabel(task.priority)}</span>
        )}
        {task.project && <span className="badge">{task.project.name}</span>}
        <span className="card__assignee">{assignee}</span>
        {onEdit && (
          <button
            type="button"
            className="button button--ghost button--small card__edit"
            aria-label={`Edit task #${task.number}`}
            onClick={() => onEdit(task)}
          >
            Edit
          </button>
        )}
      </div>
    </li>
  );
});
