"""Agents and teams."""

from __future__ import annotations

import sqlalchemy as sa
import strawberry

from taskmachine import models as m
from taskmachine.domain import agents, validate
from taskmachine.domain.lookup import visible
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, ident, need_id, principal
from taskmachine.schema.ops.listing import page
from taskmachine.schema.pagination import Connection
from taskmachine.schema.types.agents import Agent, Team
from taskmachine.schema.types.enums import AutonomyLevel, Role


@strawberry.input
class AgentFilter:
    include_archived: bool = False
    search: str | None = None


@strawberry.input
class AgentProfileInput:
    name: str | None = None
    handle: str | None = None
    summary: str | None = None
    instructions: str | None = None
    default_runtime_id: strawberry.ID | None = None
    clear_default_runtime: bool = False
    model: str | None = None
    reasoning_level: str | None = None
    concurrency_limit: int | None = None
    autonomy: AutonomyLevel | None = None
    memory: str | None = None
    role: Role | None = None
    may_steer_by_reaction: bool | None = None


def _changes(profile: AgentProfileInput) -> agents.AgentChanges:
    return agents.AgentChanges(
        name=profile.name,
        handle=profile.handle,
        summary=profile.summary,
        instructions=profile.instructions,
        default_runtime_id=ident(profile.default_runtime_id, "defaultRuntimeId"),
        clear_default_runtime=profile.clear_default_runtime,
        model=profile.model,
        reasoning_level=profile.reasoning_level,
        concurrency_limit=profile.concurrency_limit,
        autonomy=profile.autonomy,
        memory=profile.memory,
        role=profile.role,
        may_steer_by_reaction=profile.may_steer_by_reaction,
    )


@strawberry.input
class TeamInput:
    name: str | None = None
    handle: str | None = None
    lead_agent_id: strawberry.ID | None = None
    clear_lead: bool = False
    member_agent_ids: list[strawberry.ID] | None = None


def _team_changes(team: TeamInput) -> agents.TeamChanges:
    members = team.member_agent_ids
    return agents.TeamChanges(
        name=team.name,
        handle=team.handle,
        lead_agent_id=ident(team.lead_agent_id, "leadAgentId"),
        clear_lead=team.clear_lead,
        member_agent_ids=None
        if members is None
        else [need_id(a, "memberAgentIds") for a in members],
    )


@strawberry.type
class Query:
    @strawberry.field
    async def agents(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        filter: AgentFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Agent]:
        wid = need_id(workspace_id, "workspaceId")
        query = sa.select(m.Agent).where(m.Agent.workspace_id == wid)
        if not (filter and filter.include_archived):
            query = query.where(m.Agent.archived_at.is_(None))
        if filter and filter.search:
            needle = f"%{validate.needle(filter.search, 'search')}%"
            query = query.where(sa.or_(m.Agent.name.ilike(needle), m.Agent.handle.ilike(needle)))
        return await page(
            info, query, m.Agent.id, Agent.of, first=first, after=after, workspace_id=wid
        )

    @strawberry.field
    async def agent(self, info: Info, id: strawberry.ID) -> Agent:
        caller = await principal(info)
        async with db() as session:
            row, _ = await visible(session, caller, m.Agent, need_id(id, "id"), "agent")
        return Agent.of(row)

    @strawberry.field
    async def teams(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Team]:
        wid = need_id(workspace_id, "workspaceId")
        query = sa.select(m.Team).where(m.Team.workspace_id == wid)
        return await page(
            info, query, m.Team.id, Team.of, first=first, after=after, workspace_id=wid
        )

    @strawberry.field
    async def team(self, info: Info, id: strawberry.ID) -> Team:
        caller = await principal(info)
        async with db() as session:
            row, _ = await visible(session, caller, m.Team, need_id(id, "id"), "team")
        return Team.of(row)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_agent(
        self, info: Info, workspace_id: strawberry.ID, profile: AgentProfileInput
    ) -> Agent:
        caller = await principal(info)
        async with db() as session:
            row = await agents.create_agent(
                session, caller, need_id(workspace_id, "workspaceId"), _changes(profile)
            )
        return Agent.of(row)

    @strawberry.mutation
    async def update_agent(
        self, info: Info, id: strawberry.ID, profile: AgentProfileInput
    ) -> Agent:
        caller = await principal(info)
        async with db() as session:
            row = await agents.update_agent(session, caller, need_id(id, "id"), _changes(profile))
        return Agent.of(row)

    @strawberry.mutation
    async def create_team(self, info: Info, workspace_id: strawberry.ID, team: TeamInput) -> Team:
        caller = await principal(info)
        async with db() as session:
            row = await agents.create_team(
                session, caller, need_id(workspace_id, "workspaceId"), _team_changes(team)
            )
        return Team.of(row)

    @strawberry.mutation
    async def update_team(self, info: Info, id: strawberry.ID, team: TeamInput) -> Team:
        caller = await principal(info)
        async with db() as session:
            row = await agents.update_team(session, caller, need_id(id, "id"), _team_changes(team))
        return Team.of(row)
