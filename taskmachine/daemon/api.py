"""The machine's GraphQL client for the Task Machine server (plain httpx, POST /graphql).

ApiError                 the server answered with an error (code = extensions.code)
 ├── ApiUnreachableError  no answer: connection refused, DNS, timeout, or not a GraphQL server
 └── UnauthenticatedError code UNAUTHENTICATED: the token was missing, expired or revoked
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

DEFAULT_TIMEOUT = 15.0


class ApiError(Exception):
    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ApiUnreachableError(ApiError):
    pass


class UnauthenticatedError(ApiError):
    pass


def _describe(exc: httpx.HTTPError) -> str:
    cause: BaseException | None = exc
    # The innermost cause says it best ("[Errno 111] Connection refused").
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause or exc).strip()
    return text or type(exc).__name__


class ApiClient:
    """Talks to one server; use `async with` (or call aclose)."""

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.api_url, timeout=timeout, transport=transport, follow_redirects=False
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """Run one operation; its `data`, or raise an ApiError subclass."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        where = f"{self.api_url}/graphql"
        try:
            response = await self._http.post(
                "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ApiUnreachableError(f"cannot reach {where}: {_describe(exc)}") from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or ("data" not in body and "errors" not in body):
            raise ApiUnreachableError(
                f"{where} answered HTTP {response.status_code} without GraphQL: "
                "is --api-url the Task Machine server?"
            )
        errors = body.get("errors") or []
        if errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = (first.get("extensions") or {}).get("code")
            message = str(first.get("message") or "unknown error")
            if code == "UNAUTHENTICATED":
                raise UnauthenticatedError(message, code)
            raise ApiError(f"{message} ({code})" if code else message, code)
        data = body.get("data")
        if not isinstance(data, dict):
            raise ApiError(f"{where} returned no data")
        return data
