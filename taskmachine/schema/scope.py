"""One GraphQL operation's database session, lock and DataLoaders.

Strawberry resolves sibling fields concurrently, and one AsyncSession must not be used by two
coroutines at once, so every use goes through `scope.db()`, which holds the lock. The scope
lives in a ContextVar set by the OperationScopeExtension (per operation; a WebSocket carries many)
and anew for each event of a subscription, so DataLoaders never serve stale rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar, Token

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.domain.people import STAMP_KEY
from taskmachine.schema.loaders import Loaders
from taskmachine.schema.state import AppState

_current: ContextVar[OperationScope | None] = ContextVar("taskmachine_operation", default=None)


class OperationScope:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self._session: AsyncSession | None = None
        self.lock = asyncio.Lock()
        self.loaders = Loaders(self)

    @contextlib.asynccontextmanager
    async def db(self) -> AsyncIterator[AsyncSession]:
        async with self.lock:
            if self._session is None:
                self._session = self.state.session_factory()
            yield self._session

    async def finish(self, commit: bool, *, keep_stamp: bool = False) -> None:
        """Commit or discard the operation's transaction. `keep_stamp`: commit anyway if the
        only write is the caller's token stamp (a query's, whose principal was looked up in this
        session; a failed mutation's writes are not kept for it)."""
        self.loaders.release()
        if self._session is None:
            return
        session, self._session = self._session, None
        try:
            if commit or (keep_stamp and session.info.get(STAMP_KEY)):
                await session.commit()
        finally:
            # Closing discards an uncommitted transaction without expiring what was loaded
            # (a rollback would), so rows read here stay readable afterwards.
            await session.close()

    def activate(self) -> Token[OperationScope | None]:
        return _current.set(self)

    @staticmethod
    def deactivate(token: Token[OperationScope | None]) -> None:
        _current.reset(token)


def active_scope() -> OperationScope | None:
    """The operation's scope, or None outside one (a WebSocket's connection_init)."""
    return _current.get()


def current_scope() -> OperationScope:
    scope = active_scope()
    if scope is None:
        raise RuntimeError("no GraphQL operation scope is active")
    return scope


@contextlib.asynccontextmanager
async def event_scope(state: AppState) -> AsyncIterator[OperationScope]:
    """A fresh read-only scope for one subscription event."""
    scope = OperationScope(state)
    _current.set(scope)
    try:
        yield scope
    finally:
        await scope.finish(commit=False)
