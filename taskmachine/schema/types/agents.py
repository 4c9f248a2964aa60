"""Agents and teams."""

from __future__ import annotations

from datetime import datetime

import strawberry

from taskmachine import models as m
from taskmachine.schema.helpers import loaders
from taskmachine.schema.types.enums import AutonomyLevel, Role
from taskmachine.schema.types.fleet import Runtime


@strawberry.type
class Agent:
    id: strawberry.ID
    name: str
    handle: str
    summary: str
    instructions: str
    model: str | None
    reasoning_level: str | None
    concurrency_limit: int
    autonomy: AutonomyLevel
    memory: str
    role: Role
    may_steer_by_reaction: bool
    archived_at: datetime | None
    created_at: datetime
    _row: strawberry.Private[m.Agent]

    @classmethod
    def of(cls, row: m.Agent) -> Agent:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            handle=row.handle,
            summary=row.summary,
            instructions=row.instructions,
            model=row.model,
            reasoning_level=row.reasoning_level,
            concurrency_limit=row.concurrency_limit,
            autonomy=row.autonomy,
            memory=row.memory,
            role=row.role,
            may_steer_by_reaction=row.may_steer_by_reaction,
            archived_at=row.archived_at,
            created_at=row.created_at,
            _row=row,
        )

    @strawberry.field
    async def default_runtime(self) -> Runtime | None:
        if self._row.default_runtime_id is None:
            return None
        row = await loaders().runtime.load(self._row.default_runtime_id)
        return Runtime.of(row) if row else None


@strawberry.type
class Team:
    id: strawberry.ID
    name: str
    handle: str
    created_at: datetime
    _row: strawberry.Private[m.Team]

    @classmethod
    def of(cls, row: m.Team) -> Team:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            handle=row.handle,
            created_at=row.created_at,
            _row=row,
        )

    @strawberry.field
    async def lead(self) -> Agent | None:
        if self._row.lead_agent_id is None:
            return None
        row = await loaders().agent.load(self._row.lead_agent_id)
        return Agent.of(row) if row else None

    @strawberry.field
    async def members(self) -> list[Agent]:
        links = await loaders().members_by_team.load(self._row.id)
        rows = await loaders().agent.load_many([link.agent_id for link in links])
        return [Agent.of(r) for r in rows if r is not None]
