"""Cursor connections. Ids are time-ordered UUIDs, so the id itself is the keyset cursor."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.domain.errors import BadInput

T = TypeVar("T")
DEFAULT_PAGE = 50


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    _count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many items match, across all pages.")
    async def total_count(self) -> int:
        return await self._count()


def encode_cursor(row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(row_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except ValueError:
        raise BadInput("after is not a valid cursor", field="after") from None


def check_first(first: int | None, max_page: int) -> int:
    size = DEFAULT_PAGE if first is None else first
    if not 0 <= size <= max_page:
        raise BadInput(f"first must be between 0 and {max_page}", field="first")
    return size


def connection(
    rows: Sequence[Any],
    first: int,
    *,
    id_of: Callable[[Any], uuid.UUID],
    convert: Callable[[Any], T],
    count: Callable[[], Awaitable[int]],
) -> Connection[T]:
    """A page from up to first + 1 rows in cursor order (the extra row says another page
    follows)."""
    edges = [Edge(cursor=encode_cursor(id_of(row)), node=convert(row)) for row in rows[:first]]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
        _count=count,
    )


def _row_id(row: Any) -> uuid.UUID:
    row_id: uuid.UUID = row.id
    return row_id


async def paginate(
    session: AsyncSession,
    query: sa.Select[Any],
    id_column: Any,
    *,
    first: int,
    after: str | None,
    descending: bool = False,
    convert: Callable[[Any], T],
    count_session: Callable[[], Any],
) -> Connection[T]:
    """Keyset pagination on a time-ordered id column."""
    page_query = query
    if after:
        cursor = decode_cursor(after)
        page_query = page_query.where(id_column < cursor if descending else id_column > cursor)
    order = id_column.desc() if descending else id_column.asc()
    rows: Sequence[Any] = (await session.scalars(page_query.order_by(order).limit(first + 1))).all()
    count_query = query.with_only_columns(sa.func.count()).order_by(None)

    async def count() -> int:
        async with count_session() as s:
            return int(await s.scalar(count_query) or 0)

    return connection(rows, first, id_of=_row_id, convert=convert, count=count)
