"""Small helpers every resolver uses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain.errors import Forbidden
from taskmachine.domain.validate import parse_id
from taskmachine.schema.context import Info
from taskmachine.schema.loaders import Loaders
from taskmachine.schema.scope import current_scope


@asynccontextmanager
async def db(info: Info | None = None) -> AsyncIterator[AsyncSession]:
    async with current_scope().db() as session:
        yield session


def loaders(info: Info | None = None) -> Loaders:
    return current_scope().loaders


async def principal(info: Info, *, machine: bool = False) -> Principal:
    """The caller; a machine's token is accepted only where `machine=True` says so."""
    caller = await info.context.require_principal()
    if caller.machine_id is not None and not machine:
        raise Forbidden("a machine's token can only ask about its own machine")
    return caller


def ident(value: str | None, field: str) -> uuid.UUID | None:
    return None if value is None else parse_id(value, field)


def need_id(value: str, field: str) -> uuid.UUID:
    return parse_id(value, field)
