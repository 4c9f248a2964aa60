"""The Python GraphQL client (gql) over graphql-transport-ws, as an integration would use it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from gql import Client, GraphQLRequest, gql
from gql.transport.websockets import WebsocketsTransport


@contextlib.asynccontextmanager
async def ws_session(ws_url: str, token: str) -> AsyncIterator[Any]:
    transport = WebsocketsTransport(
        url=ws_url,
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    async with Client(transport=transport) as session:
        yield session


class Subscription:
    """Collects a subscription's results in the background."""

    def __init__(self, session: Any, query: str, variables: dict[str, Any]) -> None:
        self.items: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        request = GraphQLRequest(gql(query), variable_values=variables)
        self._task = asyncio.create_task(self._pump(session, request))

    async def _pump(self, session: Any, request: Any) -> None:
        async for result in session.subscribe(request):
            await self.items.put(result)

    async def next(self, wait: float = 15.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.items.get(), wait)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


@contextlib.asynccontextmanager
async def http_session(url: str, token: str) -> AsyncIterator[Any]:
    """gql over HTTP with a personal API token, as an integration signs in."""
    from gql.transport.httpx import HTTPXAsyncTransport

    # The same 30 s as the suite's own client: httpx's default 5 s failed a request that a
    # fully loaded CI box answered late, which is not what these tests are about.
    transport = HTTPXAsyncTransport(
        url=url, headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    async with Client(transport=transport) as session:
        yield session


async def execute(
    session: Any, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = await session.execute(
        GraphQLRequest(gql(query), variable_values=variables or {})
    )
    return result
