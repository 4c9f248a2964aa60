"""Triggers: product events that start an agent's turn."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.loop.start import start_run
from taskmachine.models import Agent, Run, Task, TriggerKind

ASSIGNMENT_INSTRUCTION = (
    "You have been assigned this task and now own it. Set it in progress with "
    "`tama tasks status in_progress`, do the work in this folder, report progress with "
    "`tama tasks comment`, and when you are done write the completion summary with "
    "`tama tasks summary` and set the status."
)


def task_context(task: Task) -> dict[str, str]:
    return {
        "workspace_id": str(task.workspace_id),
        "task_id": str(task.id),
        "task_number": str(task.number),
        "task_title": task.title,
        "task_status": task.status.value,
        "task_priority": task.priority.value,
    }


async def on_assigned(session: AsyncSession, task: Task, agent: Agent) -> Run:
    """Assignment puts the task on the agent's queue; the dispatcher starts it when it may."""
    body = f"{ASSIGNMENT_INSTRUCTION}\n\nTask #{task.number}: {task.title}\n\n{task.description}".strip()
    return await start_run(
        session,
        agent=agent,
        trigger_kind=TriggerKind.ASSIGNMENT,
        trigger_input=body,
        context=task_context(task),
        task=task,
    )
