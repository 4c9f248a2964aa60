"""The per-request (HTTP) or per-connection (WebSocket) GraphQL context."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from taskmachine.auth.principal import Principal
from taskmachine.auth.resolve import (
    SESSION_COOKIE,
    bearer,
    principal_for_secret,
    principal_in_session,
)
from taskmachine.domain.errors import Unauthenticated
from taskmachine.schema.scope import active_scope
from taskmachine.schema.state import AppState


@dataclass
class Context:
    state: AppState
    request: Request | WebSocket
    response: Response | None = None
    # The secret presented in connection_init (WebSocket) takes precedence over the cookie.
    connection_secret: str | None = None
    # Set by Strawberry from the WebSocket connection_init payload.
    connection_params: dict[str, Any] | None = None
    _principal: Principal | None = None
    _resolved: bool = False
    _rejected: bool = False
    # Root fields resolve concurrently; one lookup serves them all. Without it each opened its
    # own session, and on SQLite (BEGIN IMMEDIATE) those queued behind the operation's own
    # transaction until busy_timeout: "database is locked".
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    extra: dict[str, Any] = field(default_factory=dict)

    def _presented_secret(self) -> str | None:
        if self.connection_secret:
            return self.connection_secret
        header = bearer(self.request.headers.get("authorization"))
        return header or self.request.cookies.get(SESSION_COOKIE)

    async def principal(self) -> Principal | None:
        async with self._lock:
            if not self._resolved:
                secret = self._presented_secret()
                if secret:
                    self._principal = await self._look_up(secret)
                    self._rejected = self._principal is None
                self._resolved = True
        if self._rejected:
            raise Unauthenticated("the presented credentials are invalid or expired")
        return self._principal

    async def _look_up(self, secret: str) -> Principal | None:
        # Inside an HTTP operation, in its own session: no second transaction (on SQLite a
        # BEGIN, a COMMIT and a wait for the one connection; on PostgreSQL a checkout with its
        # ping) before the operation's. A WebSocket resolves once, at connection_init, alone.
        scope = active_scope()
        if scope is not None and isinstance(self.request, Request):
            async with scope.db() as session:
                return await principal_in_session(session, self.state.hasher, secret)
        return await principal_for_secret(self.state.session_factory, self.state.hasher, secret)

    async def require_principal(self) -> Principal:
        principal = await self.principal()
        if principal is None:
            raise Unauthenticated("sign in first")
        return principal


Info = StrawberryInfo[Context, None]
