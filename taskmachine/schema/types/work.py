"""Projects, goals, tasks, and the Actor union (a person or an agent)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import strawberry

from taskmachine import models as m
from taskmachine.schema.helpers import loaders
from taskmachine.schema.types.agents import Agent
from taskmachine.schema.types.enums import GoalStatus, TaskPriority, TaskStatus
from taskmachine.schema.types.people import User

Actor = Annotated[User | Agent, strawberry.union("Actor", description="A person or an agent.")]


async def actor(user_id: uuid.UUID | None, agent_id: uuid.UUID | None) -> User | Agent | None:
    if user_id is not None:
        user = await loaders().user.load(user_id)
        return User.of(user) if user else None
    if agent_id is not None:
        agent = await loaders().agent.load(agent_id)
        return Agent.of(agent) if agent else None
    return None


@strawberry.type
class Project:
    id: strawberry.ID
    name: str
    description: str
    archived_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: m.Project) -> Project:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            description=row.description,
            archived_at=row.archived_at,
            created_at=row.created_at,
        )


@strawberry.type
class Goal:
    id: strawberry.ID
    title: str
    description: str
    status: GoalStatus
    created_at: datetime
    _row: strawberry.Private[m.Goal]

    @classmethod
    def of(cls, row: m.Goal) -> Goal:
        return cls(
            id=strawberry.ID(str(row.id)),
            title=row.title,
            description=row.description,
            status=row.status,
            created_at=row.created_at,
            _row=row,
        )

    @strawberry.field
    async def project(self) -> Project | None:
        if self._row.project_id is None:
            return None
        row = await loaders().project.load(self._row.project_id)
        return Project.of(row) if row else None

    @strawberry.field
    async def lead(self) -> Agent | None:
        if self._row.lead_agent_id is None:
            return None
        row = await loaders().agent.load(self._row.lead_agent_id)
        return Agent.of(row) if row else None


@strawberry.type
class Task:
    id: strawberry.ID
    number: int
    title: str
    description: str
    status: TaskStatus
    priority: TaskPriority
    summary: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    _row: strawberry.Private[m.Task]
    # Set by the board query for its page: these fields then resolve without a coroutine each.
    _extras: strawberry.Private[TaskExtras | None] = None

    @classmethod
    def of(cls, row: m.Task) -> Task:
        return cls(
            id=strawberry.ID(str(row.id)),
            number=row.number,
            title=row.title,
            description=row.description,
            status=row.status,
            priority=row.priority,
            summary=row.summary,
            created_at=row.created_at,
            updated_at=row.updated_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            _row=row,
        )

    @strawberry.field
    def workspace_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.workspace_id))

    @strawberry.field
    def assignee(self) -> Actor | None:
        if self._extras is not None:
            return self._extras.assignee
        return actor(self._row.assignee_user_id, self._row.assignee_agent_id)  # type: ignore[return-value]

    @strawberry.field
    async def reviewer(self) -> Actor | None:
        return await actor(self._row.reviewer_user_id, self._row.reviewer_agent_id)

    @strawberry.field
    async def created_by(self) -> Actor | None:
        return await actor(self._row.created_by_user_id, self._row.created_by_agent_id)

    @strawberry.field
    async def project(self) -> Project | None:
        if self._row.project_id is None:
            return None
        row = await loaders().project.load(self._row.project_id)
        return Project.of(row) if row else None

    @strawberry.field
    async def goal(self) -> Goal | None:
        if self._row.goal_id is None:
            return None
        row = await loaders().goal.load(self._row.goal_id)
        return Goal.of(row) if row else None

    @strawberry.field
    async def parent(self) -> Task | None:
        if self._row.parent_id is None:
            return None
        row = await loaders().task.load(self._row.parent_id)
        return Task.of(row) if row else None

    # Plain functions that may return an awaitable: graphql-core awaits it, and a prefetched
    # value costs no coroutine.
    @strawberry.field
    def tags(self) -> list[str]:
        if self._extras is not None:
            return self._extras.tags
        return loaders().tags_by_task.load(self._row.id)  # type: ignore[return-value]

    @strawberry.field
    def comment_count(self) -> int:
        if self._extras is not None:
            return self._extras.comment_count
        return loaders().comment_count_by_task.load(self._row.id)  # type: ignore[return-value]


@dataclass
class TaskExtras:
    assignee: User | Agent | None
    tags: list[str]
    comment_count: int


async def prefetch_extras(tasks: list[Task]) -> None:
    """One batch each for the page's assignees, tags and comment counts (the DataLoaders' own
    statements), handed to the tasks so the fields resolve synchronously."""
    if not tasks:
        return
    rows = [t._row for t in tasks]
    ids = [r.id for r in rows]
    tags = await loaders().tags_by_task.load_many(ids)
    counts = await loaders().comment_count_by_task.load_many(ids)
    users = {
        u.id: u
        for u in await loaders().user.load_many(
            list({r.assignee_user_id for r in rows if r.assignee_user_id})
        )
        if u is not None
    }
    agents = {
        a.id: a
        for a in await loaders().agent.load_many(
            list({r.assignee_agent_id for r in rows if r.assignee_agent_id})
        )
        if a is not None
    }
    for task, row, tag_list, count in zip(tasks, rows, tags, counts, strict=True):
        assignee: User | Agent | None = None
        if row.assignee_user_id in users:
            assignee = User.of(users[row.assignee_user_id])
        elif row.assignee_agent_id in agents:
            assignee = Agent.of(agents[row.assignee_agent_id])
        task._extras = TaskExtras(assignee, tag_list, count)
