"""Projects, goals, tasks, and the Actor union (a person or an agent)."""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
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


# A task as loaded: the ORM row, or a plain row of the tasks table's columns (the board's page).
TaskRow = m.Task | sa.Row[Any]
_COLUMN = {column.key: i for i, column in enumerate(m.Task.__table__.c)}
# Indexing a Row is ~10x cheaper than its attribute access.
_pick_task_fields = operator.itemgetter(
    *(
        _COLUMN[name]
        for name in (
            "id",
            "number",
            "title",
            "description",
            "status",
            "priority",
            "summary",
            "created_at",
            "updated_at",
            "started_at",
            "completed_at",
        )
    )
)


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
    _row: strawberry.Private[TaskRow]
    # Set by the board query for its page: these fields then resolve without a coroutine each.
    _extras: strawberry.Private[TaskExtras | None] = None

    @classmethod
    def of(cls, row: TaskRow, extras: TaskExtras | None = None) -> Task:
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
            _extras=extras,
        )

    @classmethod
    def of_row(cls, row: sa.Row[Any], extras: TaskExtras | None = None) -> Task:
        """From a plain row of the tasks table's columns (and maybe more after them)."""
        (
            id,
            number,
            title,
            description,
            status,
            priority,
            summary,
            created_at,
            updated_at,
            started_at,
            completed_at,
        ) = _pick_task_fields(row)
        return cls(
            id=strawberry.ID(str(id)),
            number=number,
            title=title,
            description=description,
            status=status,
            priority=priority,
            summary=summary,
            created_at=created_at,
            updated_at=updated_at,
            started_at=started_at,
            completed_at=completed_at,
            _row=row,
            _extras=extras,
        )

    @strawberry.field
    def workspace_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.workspace_id))

    # Plain functions that may return an awaitable: graphql-core awaits it, and a prefetched
    # value costs no coroutine.
    @strawberry.field
    def assignee(self) -> Actor | None:
        extras = self._extras
        if extras is not None and extras.has_assignee:
            return extras.assignee
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

    @strawberry.field
    def tags(self) -> list[str]:
        extras = self._extras
        if extras is not None and extras.tags is not None:
            return extras.tags
        return loaders().tags_by_task.load(self._row.id)  # type: ignore[return-value]

    @strawberry.field
    def comment_count(self) -> int:
        extras = self._extras
        if extras is not None and extras.comment_count is not None:
            return extras.comment_count
        return loaders().comment_count_by_task.load(self._row.id)  # type: ignore[return-value]


@dataclass(slots=True)
class TaskExtras:
    """What a page query fetched beside the task's own columns; None where it did not."""

    tags: list[str] | None = None
    comment_count: int | None = None
    assignee: User | Agent | None = None
    has_assignee: bool = False
