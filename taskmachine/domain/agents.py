"""Agent profiles and teams."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain import access, validate
from taskmachine.domain.errors import BadInput, Conflict, NotFound
from taskmachine.domain.lookup import in_workspace, visible
from taskmachine.models import (
    Agent,
    AutonomyLevel,
    MachineWorkspace,
    Role,
    Runtime,
    Team,
    TeamMember,
)

MEMORY_LIMIT = 20_000


@dataclass
class AgentChanges:
    """Fields to change; None leaves a field as it is."""

    name: str | None = None
    handle: str | None = None
    summary: str | None = None
    instructions: str | None = None
    default_runtime_id: uuid.UUID | None = None
    clear_default_runtime: bool = False
    model: str | None = None
    reasoning_level: str | None = None
    concurrency_limit: int | None = None
    autonomy: AutonomyLevel | None = None
    memory: str | None = None
    role: Role | None = None
    may_steer_by_reaction: bool | None = None


async def _check_runtime(
    session: AsyncSession, workspace_id: uuid.UUID, runtime_id: uuid.UUID
) -> None:
    linked = await session.scalar(
        sa.select(Runtime.id)
        .join(MachineWorkspace, MachineWorkspace.machine_id == Runtime.machine_id)
        .where(Runtime.id == runtime_id, MachineWorkspace.workspace_id == workspace_id)
    )
    if linked is None:
        raise NotFound("no such runtime in this workspace", field="defaultRuntimeId")


async def _apply(session: AsyncSession, agent: Agent, changes: AgentChanges) -> None:
    if changes.name is not None:
        agent.name = validate.text(changes.name, "name", max_length=120)
    if changes.handle is not None:
        handle = validate.handle(changes.handle)
        clash = await session.scalar(
            sa.select(Agent.id).where(
                Agent.workspace_id == agent.workspace_id,
                Agent.handle == handle,
                Agent.id != agent.id,
            )
        )
        if clash is not None:
            raise Conflict(f"another agent already has the handle @{handle}", field="handle")
        agent.handle = handle
    if changes.summary is not None:
        agent.summary = validate.text(changes.summary, "summary", max_length=2000, required=False)
    if changes.instructions is not None:
        agent.instructions = validate.text(
            changes.instructions, "instructions", max_length=50_000, required=False
        )
    if changes.clear_default_runtime:
        agent.default_runtime_id = None
    elif changes.default_runtime_id is not None:
        await _check_runtime(session, agent.workspace_id, changes.default_runtime_id)
        agent.default_runtime_id = changes.default_runtime_id
    if changes.model is not None:
        agent.model = validate.text(changes.model, "model", max_length=120, required=False) or None
    if changes.reasoning_level is not None:
        agent.reasoning_level = (
            validate.text(changes.reasoning_level, "reasoningLevel", max_length=32, required=False)
            or None
        )
    if changes.concurrency_limit is not None:
        if not 1 <= changes.concurrency_limit <= 64:
            raise BadInput("concurrencyLimit must be between 1 and 64", field="concurrencyLimit")
        agent.concurrency_limit = changes.concurrency_limit
    if changes.autonomy is not None:
        agent.autonomy = changes.autonomy
    if changes.memory is not None:
        agent.memory = validate.text(
            changes.memory, "memory", max_length=MEMORY_LIMIT, required=False
        )
    if changes.role is not None:
        if changes.role is Role.OWNER:
            raise BadInput("an agent cannot be an owner", field="role")
        agent.role = changes.role
    if changes.may_steer_by_reaction is not None:
        agent.may_steer_by_reaction = changes.may_steer_by_reaction


async def create_agent(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID, changes: AgentChanges
) -> Agent:
    await access.require(session, principal, workspace_id, "agent.manage")
    if changes.name is None:
        raise BadInput("name must not be empty", field="name")
    agent = Agent(
        workspace_id=workspace_id,
        name="",
        handle="",
        summary="",
        instructions="",
        memory="",
        concurrency_limit=1,
        autonomy=AutonomyLevel.LOW,
        role=Role.MEMBER,
        may_steer_by_reaction=False,
    )
    if changes.handle is None:
        changes.handle = validate.slugify(changes.name)[:64]
    await _apply(session, agent, changes)
    session.add(agent)
    await session.flush()
    return agent


async def update_agent(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, changes: AgentChanges
) -> Agent:
    agent, _ = await visible(session, principal, Agent, agent_id, "agent")
    if principal.agent_id == agent.id and _only_memory(changes):
        pass  # an agent may keep its own memory
    else:
        await access.require(session, principal, agent.workspace_id, "agent.manage")
    await _apply(session, agent, changes)
    await session.flush()
    return agent


def _only_memory(changes: AgentChanges) -> bool:
    return all(
        getattr(changes, f.name) in (None, False) for f in fields(changes) if f.name != "memory"
    )


@dataclass
class TeamChanges:
    name: str | None = None
    handle: str | None = None
    lead_agent_id: uuid.UUID | None = None
    clear_lead: bool = False
    member_agent_ids: list[uuid.UUID] | None = None


async def _apply_team(session: AsyncSession, team: Team, changes: TeamChanges) -> None:
    if changes.name is not None:
        team.name = validate.text(changes.name, "name", max_length=120)
    if changes.handle is not None:
        handle = validate.handle(changes.handle)
        clash = await session.scalar(
            sa.select(Team.id).where(
                Team.workspace_id == team.workspace_id, Team.handle == handle, Team.id != team.id
            )
        )
        if clash is not None:
            raise Conflict(f"another team already has the handle @{handle}", field="handle")
        team.handle = handle
    if changes.clear_lead:
        team.lead_agent_id = None
    elif changes.lead_agent_id is not None:
        await in_workspace(session, Agent, changes.lead_agent_id, team.workspace_id, "leadAgentId")
        team.lead_agent_id = changes.lead_agent_id
    await session.flush()
    if changes.member_agent_ids is not None:
        if len(changes.member_agent_ids) > 200:
            raise BadInput("a team has at most 200 members", field="memberAgentIds")
        for agent_id in changes.member_agent_ids:
            await in_workspace(session, Agent, agent_id, team.workspace_id, "memberAgentIds")
        await session.execute(sa.delete(TeamMember).where(TeamMember.team_id == team.id))
        for agent_id in dict.fromkeys(changes.member_agent_ids):
            session.add(TeamMember(team_id=team.id, agent_id=agent_id))
        await session.flush()


async def create_team(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID, changes: TeamChanges
) -> Team:
    await access.require(session, principal, workspace_id, "team.manage")
    if changes.name is None:
        raise BadInput("name must not be empty", field="name")
    team = Team(workspace_id=workspace_id, name="", handle="")
    if changes.handle is None:
        changes.handle = validate.slugify(changes.name)[:64]
    session.add(team)
    await _apply_team(session, team, changes)
    return team


async def update_team(
    session: AsyncSession, principal: Principal, team_id: uuid.UUID, changes: TeamChanges
) -> Team:
    team, _ = await visible(session, principal, Team, team_id, "team")
    await access.require(session, principal, team.workspace_id, "team.manage")
    await _apply_team(session, team, changes)
    return team
