"""Claiming a delivered job: the server accepts exactly one claim per run attempt.

    claim(run_id, attempt) -> True    accepted: this machine runs it
                           -> False   refused: a duplicate delivery, or the run is gone
                           raises ClaimUnavailable: no answer now (requeue and try later)

Two ways to claim: over the broker (BrokerClaimer, what the daemon uses: a message each way) and
over GraphQL (HttpClaimer, `claimRun`, for tools). The server's claim deadline is the backstop
for a claim that never gets through.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import AbstractExchange

from taskmachine.daemon.api import ApiClient, ApiError, ApiUnreachableError, UnauthenticatedError
from taskmachine.wire.control import ClaimAnswer
from taskmachine.wire.runs import RunClaim
from taskmachine.wire.topology import claim_routing_key, machine_username

log = logging.getLogger(__name__)

CLAIM_RUN = """mutation ClaimRun($runId: ID!, $attempt: Int!) {
  claimRun(runId: $runId, attempt: $attempt) { accepted reason }
}"""

# Answers that mean "this claim will never be accepted": drop the job rather than retry it.
_FINAL_CODES = frozenset({"NOT_FOUND", "FORBIDDEN", "BAD_USER_INPUT", "CONFLICT"})
# A claim's answer normally takes milliseconds; this long means the server is away or swamped.
BROKER_CLAIM_TIMEOUT = 15.0


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


class BrokerClaimer:
    """Claims over the broker: a RunClaim on tama.events (machine.<id>.claim.<run>, as this
    machine), answered by the
    server with a ClaimAnswer on this machine's control queue (the control consumer hands it to
    `answered`). No answer within `timeout` is ClaimUnavailable: the job goes back to the queue
    and is claimed again later, and the server says yes again to the machine holding a claim.
    """

    def __init__(self, machine_id: str, *, timeout: float = BROKER_CLAIM_TIMEOUT) -> None:
        self._machine_id = machine_id
        self._user_id = machine_username(machine_id)
        self._timeout = timeout
        self._exchange: AbstractExchange | None = None
        self._waiting: dict[uuid.UUID, asyncio.Future[ClaimAnswer]] = {}

    def attach(self, exchange: AbstractExchange) -> None:
        """The events exchange of the current connection (after every reconnect)."""
        self._exchange = exchange

    def answered(self, answer: ClaimAnswer) -> None:
        waiter = self._waiting.get(answer.claim_id)
        if waiter is None or waiter.done():
            log.info("late answer to claim %s of run %s dropped", answer.claim_id, answer.run_id)
            return
        waiter.set_result(answer)

    async def claim(self, run_id: uuid.UUID, attempt: int) -> bool:
        exchange = self._exchange
        if exchange is None:
            raise ClaimUnavailable("not connected to the broker")
        request = RunClaim(run_id=run_id, attempt=attempt, claim_id=uuid.uuid4())
        waiter: asyncio.Future[ClaimAnswer] = asyncio.get_running_loop().create_future()
        self._waiting[request.claim_id] = waiter
        try:
            try:
                await exchange.publish(
                    aio_pika.Message(
                        request.model_dump_json().encode(),
                        content_type="application/json",
                        user_id=self._user_id,
                        type="claim",
                    ),
                    routing_key=claim_routing_key(self._machine_id, str(run_id)),
                    timeout=self._timeout,
                )
                async with asyncio.timeout(self._timeout):
                    answer = await waiter
            except TimeoutError:
                raise ClaimUnavailable(f"no answer within {self._timeout:g} s") from None
            except ClaimUnavailable:
                raise
            except Exception as exc:  # the channel closed under us, and the like
                raise ClaimUnavailable(str(exc) or type(exc).__name__) from exc
        finally:
            self._waiting.pop(request.claim_id, None)
        if answer.outcome == "unavailable":
            raise ClaimUnavailable("the server could not decide now")
        if answer.outcome == "refused":
            log.info(
                "claim of run %s attempt %d refused: %s",
                run_id,
                attempt,
                answer.reason or "no reason given",
            )
        return answer.outcome == "accepted"
