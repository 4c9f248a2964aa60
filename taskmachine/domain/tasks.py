"""Tasks: create, edit, assign, status and priority. Every change lands on the timeline."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain import access, validate
from taskmachine.domain.errors import BadInput, NotFound
from taskmachine.domain.events import board_topic, emit, task_topic
from taskmachine.domain.lookup import in_workspace, visible
from taskmachine.models import (
    Agent,
    Goal,
    Membership,
    Project,
    Task,
    TaskPriority,
    TaskStatus,
    TaskTag,
    TimelineEvent,
    TimelineKind,
    Workspace,
    utcnow,
)

MAX_TAGS = 20


def record(
    session: AsyncSession,
    principal: Principal,
    task: Task,
    kind: TimelineKind,
    data: dict[str, Any] | None = None,
    *,
    comment_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
) -> TimelineEvent:
    """Append a timeline event and announce it (after commit) to the task and its board."""
    entry = TimelineEvent(
        workspace_id=task.workspace_id,
        task_id=task.id,
        kind=kind,
        actor_user_id=principal.user_id if not principal.is_agent else None,
        actor_agent_id=principal.agent_id,
        comment_id=comment_id,
        run_id=run_id or principal.run_id,
        data=data or {},
    )
    session.add(entry)
    emit(session, task_topic(task.id), {"event_id": str(entry.id), "kind": kind.value})
    emit(session, board_topic(task.workspace_id), {"task_id": str(task.id), "kind": kind.value})
    return entry


async def _check_assignee_user(
    session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    member = await session.scalar(
        sa.select(Membership.id).where(
            Membership.workspace_id == workspace_id, Membership.user_id == user_id
        )
    )
    if member is None:
        raise NotFound("no such member in this workspace", field="userId")


async def _set_tags(session: AsyncSession, task: Task, tags: list[str]) -> None:
    if len(tags) > MAX_TAGS:
        raise BadInput(f"a task has at most {MAX_TAGS} tags", field="tags")
    cleaned = list(dict.fromkeys(validate.text(t, "tags", max_length=48).lower() for t in tags))
    await session.execute(sa.delete(TaskTag).where(TaskTag.task_id == task.id))
    session.add_all(TaskTag(task_id=task.id, tag=tag) for tag in cleaned)


@dataclass
class NewTask:
    title: str
    description: str = ""
    status: TaskStatus = TaskStatus.TODO
    priority: TaskPriority = TaskPriority.NONE
    project_id: uuid.UUID | None = None
    goal_id: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None
    tags: list[str] | None = None


async def create_task(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID, new: NewTask
) -> Task:
    await access.require(session, principal, workspace_id, "task.create")
    title = validate.text(new.title, "title", max_length=300)
    description = validate.text(new.description, "description", max_length=100_000, required=False)
    if new.project_id is not None:
        await in_workspace(session, Project, new.project_id, workspace_id, "projectId")
    if new.goal_id is not None:
        await in_workspace(session, Goal, new.goal_id, workspace_id, "goalId")
    if new.parent_id is not None:
        await in_workspace(session, Task, new.parent_id, workspace_id, "parentId")
    # The counter update takes the workspace row's lock, so numbers never collide.
    number = await session.scalar(
        sa.update(Workspace)
        .where(Workspace.id == workspace_id)
        .values(task_counter=Workspace.task_counter + 1)
        .returning(Workspace.task_counter)
    )
    assert number is not None
    now = utcnow()
    task = Task(
        workspace_id=workspace_id,
        number=number,
        title=title,
        description=description,
        status=new.status,
        priority=new.priority,
        project_id=new.project_id,
        goal_id=new.goal_id,
        parent_id=new.parent_id,
        created_by_user_id=principal.user_id if not principal.is_agent else None,
        created_by_agent_id=principal.agent_id,
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    await session.flush()
    if new.tags:
        await _set_tags(session, task, new.tags)
    record(session, principal, task, TimelineKind.CREATED, {"title": title})
    await session.flush()
    return task


async def editable_task(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, key: str
) -> Task:
    # `visible` has read the caller's role already: no second membership read.
    task, role = await visible(session, principal, Task, task_id, "task")
    access.require_permission(role, key)
    return task


@dataclass
class TaskEdits:
    title: str | None = None
    description: str | None = None
    project_id: uuid.UUID | None = None
    clear_project: bool = False
    goal_id: uuid.UUID | None = None
    clear_goal: bool = False
    tags: list[str] | None = None


async def edit_task(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, edits: TaskEdits
) -> Task:
    task = await editable_task(session, principal, task_id, "task.edit")
    changed: list[str] = []
    if edits.title is not None:
        task.title = validate.text(edits.title, "title", max_length=300)
        changed.append("title")
    if edits.description is not None:
        task.description = validate.text(
            edits.description, "description", max_length=100_000, required=False
        )
        changed.append("description")
    if edits.clear_project:
        task.project_id = None
        changed.append("project")
    elif edits.project_id is not None:
        await in_workspace(session, Project, edits.project_id, task.workspace_id, "projectId")
        task.project_id = edits.project_id
        changed.append("project")
    if edits.clear_goal:
        task.goal_id = None
        changed.append("goal")
    elif edits.goal_id is not None:
        await in_workspace(session, Goal, edits.goal_id, task.workspace_id, "goalId")
        task.goal_id = edits.goal_id
        changed.append("goal")
    if edits.tags is not None:
        await _set_tags(session, task, edits.tags)
        changed.append("tags")
    if changed:
        task.updated_at = utcnow()
        record(session, principal, task, TimelineKind.EDITED, {"fields": changed})
    await session.flush()
    return task


async def assign_task(
    session: AsyncSession,
    principal: Principal,
    task_id: uuid.UUID,
    user_id: uuid.UUID | None,
    agent_id: uuid.UUID | None,
) -> Task:
    """Assign to a person or an agent (never both); neither unassigns."""
    if user_id is not None and agent_id is not None:
        raise BadInput("assign to a person or an agent, not both", field="agentId")
    task = await editable_task(session, principal, task_id, "task.assign")
    if user_id is not None:
        await _check_assignee_user(session, task.workspace_id, user_id)
    if agent_id is not None:
        agent = await in_workspace(session, Agent, agent_id, task.workspace_id, "agentId")
        if agent.archived_at is not None:
            raise BadInput("that agent is archived", field="agentId")
    before = {"user": task.assignee_user_id, "agent": task.assignee_agent_id}
    if before == {"user": user_id, "agent": agent_id}:
        return task
    task.assignee_user_id = user_id
    task.assignee_agent_id = agent_id
    task.updated_at = utcnow()
    record(
        session,
        principal,
        task,
        TimelineKind.ASSIGNED,
        {
            "from_user": _s(before["user"]),
            "from_agent": _s(before["agent"]),
            "to_user": _s(user_id),
            "to_agent": _s(agent_id),
        },
    )
    await session.flush()
    if agent_id is not None:
        from taskmachine.loop.triggers import on_assigned  # the loop builds on the domain

        # Not flushed here: the caller may dispatch the run before it is first written.
        await on_assigned(session, task, agent)
    return task


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None


async def set_status(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, status: TaskStatus
) -> Task:
    task = await editable_task(session, principal, task_id, "task.edit")
    if task.status is status:
        return task
    previous = task.status
    task.status = status
    now = utcnow()
    task.updated_at = now
    if status is TaskStatus.IN_PROGRESS and task.started_at is None:
        task.started_at = now
    task.completed_at = now if status in (TaskStatus.DONE, TaskStatus.CANCELLED) else None
    record(
        session,
        principal,
        task,
        TimelineKind.STATUS_CHANGED,
        {"from": previous.value, "to": status.value},
    )
    await session.flush()
    return task


async def set_priority(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, priority: TaskPriority
) -> Task:
    task = await editable_task(session, principal, task_id, "task.edit")
    if task.priority is priority:
        return task
    previous = task.priority
    task.priority = priority
    task.updated_at = utcnow()
    record(
        session,
        principal,
        task,
        TimelineKind.PRIORITY_CHANGED,
        {"from": previous.value, "to": priority.value},
    )
    await session.flush()
    return task
