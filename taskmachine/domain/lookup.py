"""Load a row by id and prove the caller may see it; outsiders get NOT_FOUND."""

from __future__ import annotations

import uuid
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain import access
from taskmachine.domain.errors import NotFound
from taskmachine.models import Role


class WorkspaceScoped(Protocol):
    workspace_id: uuid.UUID


T = TypeVar("T", bound=WorkspaceScoped)


async def visible(
    session: AsyncSession, principal: Principal, model: type[T], row_id: uuid.UUID, what: str
) -> tuple[T, Role]:
    row = await session.get(model, row_id)
    if row is None:
        raise NotFound(f"no such {what}")
    role = await access.role_in(session, principal, row.workspace_id)
    if role is None:
        raise NotFound(f"no such {what}")
    return row, role


async def in_workspace(
    session: AsyncSession, model: type[T], row_id: uuid.UUID, workspace_id: uuid.UUID, what: str
) -> T:
    """A referenced row (e.g. an assignee) must belong to the same workspace."""
    row = await session.get(model, row_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no such {what} in this workspace", field=what)
    return row
