"""Projects, goals and tasks."""

from __future__ import annotations

import sqlalchemy as sa
import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine import models as m
from taskmachine.domain import access, projects, tasks
from taskmachine.domain.errors import NotFound
from taskmachine.domain.lookup import visible
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, ident, need_id, principal
from taskmachine.schema.ops.listing import page
from taskmachine.schema.ops.task_page import task_page
from taskmachine.schema.pagination import Connection
from taskmachine.schema.types.enums import GoalStatus, TaskPriority, TaskStatus
from taskmachine.schema.types.work import Goal, Project, Task


async def dispatch_now(info: Info, session: AsyncSession) -> None:
    """An assignment's run goes to its machine in this same transaction when nothing waits
    ahead of it (published right after the commit); otherwise the scheduler's pass takes it."""
    scheduler = info.context.state.services.get("scheduler")
    if scheduler is not None:
        await scheduler.dispatch_queued(session)


@strawberry.input
class TaskFilter:
    status: list[TaskStatus] | None = None
    priority: list[TaskPriority] | None = None
    assignee_user_id: strawberry.ID | None = None
    assignee_agent_id: strawberry.ID | None = None
    unassigned: bool | None = None
    project_id: strawberry.ID | None = None
    goal_id: strawberry.ID | None = None
    parent_id: strawberry.ID | None = None
    tag: str | None = None
    search: str | None = None


@strawberry.input
class CreateTaskInput:
    workspace_id: strawberry.ID
    title: str
    description: str = ""
    status: TaskStatus = m.TaskStatus.TODO
    priority: TaskPriority = m.TaskPriority.NONE
    project_id: strawberry.ID | None = None
    goal_id: strawberry.ID | None = None
    parent_id: strawberry.ID | None = None
    tags: list[str] | None = None
    assignee_user_id: strawberry.ID | None = None
    assignee_agent_id: strawberry.ID | None = None


@strawberry.input
class UpdateTaskInput:
    task_id: strawberry.ID
    title: str | None = None
    description: str | None = None
    project_id: strawberry.ID | None = None
    clear_project: bool = False
    goal_id: strawberry.ID | None = None
    clear_goal: bool = False
    tags: list[str] | None = None


@strawberry.input
class AssignTaskInput:
    task_id: strawberry.ID
    user_id: strawberry.ID | None = None
    agent_id: strawberry.ID | None = None


@strawberry.input
class CreateGoalInput:
    workspace_id: strawberry.ID
    title: str
    description: str = ""
    project_id: strawberry.ID | None = None
    lead_agent_id: strawberry.ID | None = None


@strawberry.type
class Query:
    @strawberry.field(description="Tasks of a workspace, oldest first; filter for a board column.")
    async def tasks(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        filter: TaskFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Task]:
        return await task_page(info, need_id(workspace_id, "workspaceId"), filter, first, after)

    @strawberry.field
    async def task(self, info: Info, id: strawberry.ID) -> Task:
        caller = await principal(info)
        async with db() as session:
            row, _ = await visible(session, caller, m.Task, need_id(id, "id"), "task")
        return Task.of(row)

    @strawberry.field
    async def task_by_number(self, info: Info, workspace_id: strawberry.ID, number: int) -> Task:
        caller = await principal(info)
        wid = need_id(workspace_id, "workspaceId")
        async with db() as session:
            await access.require_member(session, caller, wid)
            row = await session.scalar(
                sa.select(m.Task).where(m.Task.workspace_id == wid, m.Task.number == number)
            )
        if row is None:
            raise NotFound("no such task")
        return Task.of(row)

    @strawberry.field
    async def projects(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        include_archived: bool = False,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Project]:
        wid = need_id(workspace_id, "workspaceId")
        query = sa.select(m.Project).where(m.Project.workspace_id == wid)
        if not include_archived:
            query = query.where(m.Project.archived_at.is_(None))
        return await page(
            info, query, m.Project.id, Project.of, first=first, after=after, workspace_id=wid
        )

    @strawberry.field
    async def project(self, info: Info, id: strawberry.ID) -> Project:
        caller = await principal(info)
        async with db() as session:
            row, _ = await visible(session, caller, m.Project, need_id(id, "id"), "project")
        return Project.of(row)

    @strawberry.field
    async def goals(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        status: GoalStatus | None = None,
        project_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Goal]:
        wid = need_id(workspace_id, "workspaceId")
        query = sa.select(m.Goal).where(m.Goal.workspace_id == wid)
        if status is not None:
            query = query.where(m.Goal.status == status)
        if project_id is not None:
            query = query.where(m.Goal.project_id == need_id(project_id, "projectId"))
        return await page(
            info, query, m.Goal.id, Goal.of, first=first, after=after, workspace_id=wid
        )

    @strawberry.field
    async def goal(self, info: Info, id: strawberry.ID) -> Goal:
        caller = await principal(info)
        async with db() as session:
            row, _ = await visible(session, caller, m.Goal, need_id(id, "id"), "goal")
        return Goal.of(row)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_task(self, info: Info, input: CreateTaskInput) -> Task:
        caller = await principal(info)
        new = tasks.NewTask(
            title=input.title,
            description=input.description,
            status=input.status,
            priority=input.priority,
            project_id=ident(input.project_id, "projectId"),
            goal_id=ident(input.goal_id, "goalId"),
            parent_id=ident(input.parent_id, "parentId"),
            tags=input.tags,
        )
        assignee_user = ident(input.assignee_user_id, "assigneeUserId")
        assignee_agent = ident(input.assignee_agent_id, "assigneeAgentId")
        async with db() as session:
            row = await tasks.create_task(
                session, caller, need_id(input.workspace_id, "workspaceId"), new
            )
            if assignee_user or assignee_agent:
                row = await tasks.assign_task(
                    session, caller, row.id, assignee_user, assignee_agent
                )
                await dispatch_now(info, session)
        return Task.of(row)

    @strawberry.mutation
    async def update_task(self, info: Info, input: UpdateTaskInput) -> Task:
        caller = await principal(info)
        edits = tasks.TaskEdits(
            title=input.title,
            description=input.description,
            project_id=ident(input.project_id, "projectId"),
            clear_project=input.clear_project,
            goal_id=ident(input.goal_id, "goalId"),
            clear_goal=input.clear_goal,
            tags=input.tags,
        )
        async with db() as session:
            row = await tasks.edit_task(session, caller, need_id(input.task_id, "taskId"), edits)
        return Task.of(row)

    @strawberry.mutation(description="Assign to a person or an agent; give neither to unassign.")
    async def assign_task(self, info: Info, input: AssignTaskInput) -> Task:
        caller = await principal(info)
        async with db() as session:
            row = await tasks.assign_task(
                session,
                caller,
                need_id(input.task_id, "taskId"),
                ident(input.user_id, "userId"),
                ident(input.agent_id, "agentId"),
            )
            await dispatch_now(info, session)
        return Task.of(row)

    @strawberry.mutation
    async def set_task_status(self, info: Info, task_id: strawberry.ID, status: TaskStatus) -> Task:
        caller = await principal(info)
        async with db() as session:
            row = await tasks.set_status(session, caller, need_id(task_id, "taskId"), status)
        return Task.of(row)

    @strawberry.mutation
    async def set_task_priority(
        self, info: Info, task_id: strawberry.ID, priority: TaskPriority
    ) -> Task:
        caller = await principal(info)
        async with db() as session:
            row = await tasks.set_priority(session, caller, need_id(task_id, "taskId"), priority)
        return Task.of(row)

    @strawberry.mutation
    async def create_project(
        self, info: Info, workspace_id: strawberry.ID, name: str, description: str = ""
    ) -> Project:
        caller = await principal(info)
        async with db() as session:
            row = await projects.create_project(
                session, caller, need_id(workspace_id, "workspaceId"), name, description
            )
        return Project.of(row)

    @strawberry.mutation
    async def update_project(
        self,
        info: Info,
        id: strawberry.ID,
        name: str | None = None,
        description: str | None = None,
        archived: bool | None = None,
    ) -> Project:
        caller = await principal(info)
        async with db() as session:
            row = await projects.update_project(
                session, caller, need_id(id, "id"), name, description, archived
            )
        return Project.of(row)

    @strawberry.mutation
    async def create_goal(self, info: Info, input: CreateGoalInput) -> Goal:
        caller = await principal(info)
        async with db() as session:
            row = await projects.create_goal(
                session,
                caller,
                need_id(input.workspace_id, "workspaceId"),
                input.title,
                input.description,
                ident(input.project_id, "projectId"),
                ident(input.lead_agent_id, "leadAgentId"),
            )
        return Goal.of(row)

    @strawberry.mutation
    async def update_goal(
        self,
        info: Info,
        id: strawberry.ID,
        title: str | None = None,
        description: str | None = None,
        status: GoalStatus | None = None,
    ) -> Goal:
        caller = await principal(info)
        async with db() as session:
            row = await projects.update_goal(
                session, caller, need_id(id, "id"), title, description, status
            )
        return Goal.of(row)
