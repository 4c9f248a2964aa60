"""Workspaces and memberships."""

from __future__ import annotations

import secrets
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain import access, people, validate
from taskmachine.domain.errors import Conflict, Forbidden, NotFound, Unauthenticated
from taskmachine.models import Membership, Role, Workspace


def _require_person(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise (Forbidden if principal.is_agent else Unauthenticated)("only a person can do this")
    return principal.user_id


async def create_workspace(
    session: AsyncSession, principal: Principal, name: str, slug: str | None
) -> Workspace:
    user_id = _require_person(principal)
    cleaned = validate.text(name, "name", max_length=120)
    wanted = validate.handle(slug, "slug") if slug else validate.slugify(cleaned)
    if await session.scalar(sa.select(Workspace.id).where(Workspace.slug == wanted)):
        if slug:
            raise Conflict(f"the slug {wanted!r} is taken", field="slug")
        wanted = f"{wanted}-{secrets.token_hex(3)}"
    workspace = Workspace(name=cleaned, slug=wanted)
    session.add(workspace)
    await session.flush()
    session.add(Membership(workspace_id=workspace.id, user_id=user_id, role=Role.OWNER))
    await session.flush()
    return workspace


async def rename_workspace(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID, name: str
) -> Workspace:
    await access.require(session, principal, workspace_id, "workspace.manage")
    workspace = await session.get(Workspace, workspace_id)
    assert workspace is not None
    workspace.name = validate.text(name, "name", max_length=120)
    await session.flush()
    return workspace


async def add_member(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID, email: str, role: Role
) -> Membership:
    caller_role = await access.require(session, principal, workspace_id, "member.manage")
    if role is Role.OWNER and caller_role is not Role.OWNER:
        raise Forbidden("only an owner can make another owner")
    user = await people.get_or_create_user(session, email)
    existing = await session.scalar(
        sa.select(Membership).where(
            Membership.workspace_id == workspace_id, Membership.user_id == user.id
        )
    )
    if existing is not None:
        raise Conflict(f"{user.email} is already a member", field="email")
    membership = Membership(workspace_id=workspace_id, user_id=user.id, role=role)
    session.add(membership)
    await session.flush()
    return membership


async def _membership(session: AsyncSession, membership_id: uuid.UUID) -> Membership:
    membership = await session.get(Membership, membership_id)
    if membership is None:
        raise NotFound("no such member")
    return membership


async def _ensure_another_owner(session: AsyncSession, membership: Membership) -> None:
    owners = await session.scalar(
        sa.select(sa.func.count()).where(
            Membership.workspace_id == membership.workspace_id, Membership.role == Role.OWNER
        )
    )
    if membership.role is Role.OWNER and (owners or 0) <= 1:
        raise Conflict("a workspace keeps at least one owner")


async def set_member_role(
    session: AsyncSession, principal: Principal, membership_id: uuid.UUID, role: Role
) -> Membership:
    membership = await _membership(session, membership_id)
    caller_role = await access.require(session, principal, membership.workspace_id, "member.manage")
    if Role.OWNER in (role, membership.role) and caller_role is not Role.OWNER:
        raise Forbidden("only an owner can grant or take away the owner role")
    if role is not Role.OWNER:
        await _ensure_another_owner(session, membership)
    membership.role = role
    await session.flush()
    return membership


async def remove_member(
    session: AsyncSession, principal: Principal, membership_id: uuid.UUID
) -> Membership:
    membership = await _membership(session, membership_id)
    caller_role = await access.require(session, principal, membership.workspace_id, "member.manage")
    if membership.role is Role.OWNER and caller_role is not Role.OWNER:
        raise Forbidden("only an owner can remove an owner")
    await _ensure_another_owner(session, membership)
    await session.delete(membership)
    await session.flush()
    return membership
