"""Small helpers every resolver uses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
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


async def principal(info: Info) -> Principal:
    return await info.context.require_principal()


def ident(value: str | None, field: str) -> uuid.UUID | None:
    return None if value is None else parse_id(value, field)


def need_id(value: str, field: str) -> uuid.UUID:
    return parse_id(value, field)
