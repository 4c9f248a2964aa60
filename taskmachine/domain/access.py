"""Membership lookups and permission checks, the same for people and agents."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.permissions import has_permission
from taskmachine.auth.principal import Principal
from taskmachine.domain.errors import Forbidden, NotFound, Unauthenticated
from taskmachine.models import Membership, Role


async def role_in(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID
) -> Role | None:
    """The caller's role in a workspace, or None when the workspace is not theirs to see."""
    if principal.is_agent:
        return principal.agent_role if principal.workspace_id == workspace_id else None
    if principal.user_id is None:
        return None
    role: Role | None = await session.scalar(
        sa.select(Membership.role).where(
            Membership.workspace_id == workspace_id, Membership.user_id == principal.user_id
        )
    )
    return role


async def require_member(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID
) -> Role:
    """Reading needs membership. Outsiders get NOT_FOUND: existence is not disclosed."""
    if principal.user_id is None and not principal.is_agent:
        raise Unauthenticated("sign in first")
    role = await role_in(session, principal, workspace_id)
    if role is None:
        raise NotFound("no such workspace")
    return role


async def require(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID, key: str
) -> Role:
    role = await require_member(session, principal, workspace_id)
    require_permission(role, key)
    return role


def require_permission(role: Role, key: str) -> None:
    """For a caller whose role is known already (read along with the row it asks for)."""
    if not has_permission(role, key):
        raise Forbidden(f"your role ({role.value}) lacks the permission {key}")
