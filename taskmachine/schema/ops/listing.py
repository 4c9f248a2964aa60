"""Paginated, access-checked listing shared by every collection query."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from taskmachine.domain import access
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, principal
from taskmachine.schema.pagination import Connection, check_first, paginate
from taskmachine.schema.scope import current_scope

T = TypeVar("T")


async def page(
    info: Info,
    query: sa.Select[Any],
    id_column: Any,
    convert: Callable[[Any], T],
    *,
    first: int | None,
    after: str | None,
    workspace_id: uuid.UUID | None = None,
    descending: bool = False,
) -> Connection[T]:
    """Check membership of workspace_id (when given), then return one page."""
    caller = await principal(info)
    size = check_first(first, info.context.state.settings.max_page_size)
    async with db() as session:
        if workspace_id is not None:
            await access.require_member(session, caller, workspace_id)
        return await paginate(
            session,
            query,
            id_column,
            first=size,
            after=after,
            descending=descending,
            convert=convert,
            count_session=current_scope().db,
        )
