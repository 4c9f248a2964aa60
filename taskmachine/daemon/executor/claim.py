"""Claiming a delivered job: the server accepts exactly one claim per run attempt.

    claim(run_id, attempt) -> True    accepted: this machine runs it
                           -> False   refused: a duplicate delivery, or the run is gone
                           raises ClaimUnavailable: no answer now (requeue and try later)

The server's claim deadline is the backstop for a claim that never gets through.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from taskmachine.daemon.api import ApiClient, ApiError, ApiUnreachableError, UnauthenticatedError

log = logging.getLogger(__name__)

CLAIM_RUN = """mutation ClaimRun($runId: ID!, $attempt: Int!) {
  claimRun(runId: $runId, attempt: $attempt) { accepted reason }
}"""

# Answers that mean "this claim will never be accepted": drop the job rather than retry it.
_FINAL_CODES = frozenset({"NOT_FOUND", "FORBIDDEN", "BAD_USER_INPUT", "CONFLICT"})


class ClaimUnavailable(Exception):
    """The claim could not be made now (server unreachable, token refused, server error)."""


class Claimer(Protocol):
    async def claim(self, run_id: uuid.UUID, attempt: int) -> bool: ...


class GraphQLSource(Protocol):
    """Runs one GraphQL operation as the machine (MachineCredentials has this shape)."""

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...


class _TokenSource:
    """A fixed access token in front of an ApiClient (for tools and tests)."""

    def __init__(self, client: ApiClient, token: str) -> None:
        self._client = client
        self._token = token

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._client.execute(query, variables, token=self._token)


class HttpClaimer:
    """Claims over GraphQL (`claimRun`) at `<api_url>/graphql`, as the machine.

    The daemon passes its MachineCredentials (which refreshes the access token when the server
    refuses it); `HttpClaimer.with_token` makes one from a URL and a token.
    """

    def __init__(self, source: GraphQLSource, *, owned: ApiClient | None = None) -> None:
        self._source = source
        self._owned = owned

    @classmethod
    def with_token(cls, api_url: str, token: str) -> HttpClaimer:
        client = ApiClient(api_url)
        return cls(_TokenSource(client, token), owned=client)

    async def aclose(self) -> None:
        """Close the HTTP client this claimer made itself (with_token); the daemon's is its own."""
        if self._owned is not None:
            await self._owned.aclose()

    async def claim(self, run_id: uuid.UUID, attempt: int) -> bool:
        variables = {"runId": str(run_id), "attempt": attempt}
        try:
            data = await self._source.execute(CLAIM_RUN, variables)
        except (ApiUnreachableError, UnauthenticatedError) as exc:
            raise ClaimUnavailable(str(exc)) from exc
        except ApiError as exc:
            if exc.code in _FINAL_CODES:
                log.info("claim of run %s attempt %d refused: %s", run_id, attempt, exc)
                return False
            raise ClaimUnavailable(str(exc)) from exc
        except Exception as exc:
            # CredentialsRejectedError and the like: not ours to decide; the job goes back.
            raise ClaimUnavailable(str(exc) or type(exc).__name__) from exc
        result = data.get("claimRun")
        if not isinstance(result, dict) or not isinstance(result.get("accepted"), bool):
            raise ClaimUnavailable(f"claimRun answered {result!r}")
        if not result["accepted"]:
            log.info(
                "claim of run %s attempt %d refused: %s",
                run_id,
                attempt,
                result.get("reason") or "no reason given",
            )
        return bool(result["accepted"])
