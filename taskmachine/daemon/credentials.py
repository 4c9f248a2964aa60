"""The machine's API tokens: a short-lived access token, renewed with a rotating refresh token.

An access token that expired (or is about to) is refreshed before use; one the server calls
UNAUTHENTICATED anyway is refreshed once and the request retried. Refreshing rotates: the old
refresh token stops working at once, so the new pair is written to the config file before it is
used. A refresh token the server refuses cannot be recovered from here: `CredentialsRejectedError`
says to run `tama setup` again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from taskmachine.daemon.api import ApiClient, UnauthenticatedError
from taskmachine.daemon.config import MachineConfig, save_config

# Refresh this long before the access token expires, so it does not expire in flight.
EARLY_REFRESH = timedelta(seconds=60)

REFRESH = """mutation Refresh($token: String!) {
  refreshMachineToken(refreshToken: $token) { accessToken accessTokenExpiresAt refreshToken }
}"""


class CredentialsRejectedError(Exception):
    """The server refused the refresh token (revoked, expired, or the machine was removed)."""


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class MachineCredentials:
    def __init__(
        self,
        cfg: MachineConfig,
        client: ApiClient,
        *,
        config_file: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg = cfg
        self._client = client
        self._config_file = config_file
        self._clock = clock
        self._lock = asyncio.Lock()
        self.refreshed = 0

    def _fresh(self) -> bool:
        expires = self.cfg.access_token_expires_at
        return (
            self.cfg.access_token is not None
            and expires is not None
            and expires - EARLY_REFRESH > self._clock()
        )

    async def access_token(self) -> str:
        """A usable access token, refreshing first when it expired or is about to."""
        async with self._lock:
            if not self._fresh():
                await self._refresh_locked()
            assert self.cfg.access_token is not None
            return self.cfg.access_token

    async def refresh(self) -> None:
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_locked(self) -> None:
        if not self.cfg.refresh_token:
            raise CredentialsRejectedError(
                "this machine has no refresh token; run `tama setup` again"
            )
        try:
            data = await self._client.execute(REFRESH, {"token": self.cfg.refresh_token})
        except UnauthenticatedError as exc:
            raise CredentialsRejectedError(
                f"the server refused this machine's refresh token ({exc}); run `tama setup` again"
            ) from None
        tokens: dict[str, Any] = data["refreshMachineToken"]
        updated = self.cfg.model_copy(
            update={
                "access_token": str(tokens["accessToken"]),
                "access_token_expires_at": _parse_time(str(tokens["accessTokenExpiresAt"])),
                "refresh_token": str(tokens["refreshToken"]),
            }
        )
        # The old refresh token is already dead: keep the new one before anything else happens.
        await asyncio.to_thread(save_config, updated, self._config_file)
        self.cfg = updated
        self.refreshed += 1

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run an operation as this machine; refresh once and retry if the token was refused."""
        token = await self.access_token()
        try:
            return await self._client.execute(query, variables, token=token)
        except UnauthenticatedError:
            async with self._lock:
                # Another caller may have refreshed meanwhile; only refresh if we hold the same.
                if self.cfg.access_token == token:
                    await self._refresh_locked()
            return await self._client.execute(query, variables, token=await self.access_token())
