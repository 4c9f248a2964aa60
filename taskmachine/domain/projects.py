"""Projects and goals."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain import access, validate
from taskmachine.domain.lookup import in_workspace, visible
from taskmachine.models import Agent, Goal, GoalStatus, Project, utcnow


async def create_project(
    session: AsyncSession,
    principal: Principal,
    workspace_id: uuid.UUID,
    name: str,
    description: str,
) -> Project:
    await access.require(session, principal, workspace_id, "project.manage")
    project = Project(
        workspace_id=workspace_id,
        name=validate.text(name, "name", max_length=200),
        description=validate.text(description, "description", max_length=20_000, required=False),
    )
    session.add(project)
    await session.flush()
    return project


async def update_project(
    session: AsyncSession,
    principal: Principal,
    project_id: uuid.UUID,
    name: str | None,
    description: str | None,
    archived: bool | None,
) -> Project:
    project, _ = await visible(session, principal, Project, project_id, "project")
    await access.require(session, principal, project.workspace_id, "project.manage")
    if name is not None:
        project.name = validate.text(name, "name", max_length=200)
    if description is not None:
        project.description = validate.text(
            description, "description", max_length=20_000, required=False
        )
    if archived is not None:
        project.archived_at = utcnow() if archived else None
    await session.flush()
    return project


async def create_goal(
    session: AsyncSession,
    principal: Principal,
    workspace_id: uuid.UUID,
    title: str,
    description: str,
    project_id: uuid.UUID | None,
    lead_agent_id: uuid.UUID | None,
) -> Goal:
    await access.require(session, principal, workspace_id, "goal.manage")
    if project_id is not None:
        await in_workspace(session, Project, project_id, workspace_id, "projectId")
    if lead_agent_id is not None:
        await in_workspace(session, Agent, lead_agent_id, workspace_id, "leadAgentId")
    goal = Goal(
        workspace_id=workspace_id,
        title=validate.text(title, "title", max_length=200),
        description=validate.text(description, "description", max_length=20_000, required=False),
        project_id=project_id,
        lead_agent_id=lead_agent_id,
        status=GoalStatus.ACTIVE,
    )
    session.add(goal)
    await session.flush()
    return goal


async def update_goal(
    session: AsyncSession,
    principal: Principal,
    goal_id: uuid.UUID,
    title: str | None,
    description: str | None,
    status: GoalStatus | None,
) -> Goal:
    goal, _ = await visible(session, principal, Goal, goal_id, "goal")
    await access.require(session, principal, goal.workspace_id, "goal.manage")
    if title is not None:
        goal.title = validate.text(title, "title", max_length=200)
    if description is not None:
        goal.description = validate.text(
            description, "description", max_length=20_000, required=False
        )
    if status is not None:
        goal.status = status
    await session.flush()
    return goal
