"""Claims over the broker: a daemon's RunClaim in, a ClaimAnswer out on its control queue.

The same conditional update as the `claimRun` mutation (taskmachine.domain.runs.claim), without
an HTTP request, a token check and a GraphQL document per job: the sender is the broker-checked
`user_id`, already matched to the routing key by RunEventQueue. The answer is transient (a lost
one makes the daemon ask again, and the machine holding a claim is told yes again). A claim
whose body is malformed or names another run is dead-lettered. Claims that queue up while a
transaction runs are decided together in the next one (one conditional update for all).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aio_pika.abc import AbstractIncomingMessage

from taskmachine.db import SessionFactory, on_postgresql
from taskmachine.dispatcher.link import BrokerLink
from taskmachine.domain import runs as run_domain
from taskmachine.metrics import Metrics
from taskmachine.settings import Settings
from taskmachine.wire.control import ClaimAnswer, ClaimOutcome
from taskmachine.wire.errors import WireError
from taskmachine.wire.runs import RunClaim
from taskmachine.wire.topology import EventRoutingKey

log = logging.getLogger("taskmachine.claims")

REFUSED = "not dispatched to you, or already claimed"
# Claims decided in one transaction at most.
MAX_BATCH = 128

_Claim = tuple[uuid.UUID, RunClaim, AbstractIncomingMessage]


class ClaimDesk:
    def __init__(
        self,
        settings: Settings,
        session_factory: SessionFactory,
        link: BrokerLink,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.link = link
        self.metrics = metrics
        self._pending: list[_Claim] = []
        self._worker: asyncio.Task[None] | None = None
        metrics.describe("taskmachine_claims_total", "counter", "Run claims answered, by outcome.")

    async def handle(self, key: EventRoutingKey, message: AbstractIncomingMessage) -> None:
        try:
            claim = RunClaim.parse(message.body)
        except WireError as exc:
            log.warning("claim dead-lettered: %s", exc, extra={"routing_key": message.routing_key})
            await message.reject(requeue=False)
            return
        if key.run_id not in (str(claim.run_id), claim.run_id.hex):
            log.warning("claim names another run", extra={"routing_key": message.routing_key})
            await message.reject(requeue=False)
            return
        # Decided in batches: what arrives while one batch's transaction runs goes in the next.
        # Each is acknowledged once its batch is decided and answered.
        self._pending.append((uuid.UUID(key.machine_id), claim, message))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="claims")

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            outcomes = await self._decide(batch)
            # The answers go out together (their confirms are awaited together).
            sent = await asyncio.gather(
                *(
                    self._answer(str(machine_id), claim, outcome)
                    for (machine_id, claim, _), outcome in zip(batch, outcomes, strict=True)
                ),
                return_exceptions=True,
            )
            for (_, claim, message), outcome, error in zip(batch, outcomes, sent, strict=True):
                if isinstance(error, BaseException):
                    # The daemon times out and asks again; an accepted claim is accepted again.
                    log.warning(
                        "claim answer not sent: %s", error, extra={"run_id": str(claim.run_id)}
                    )
                self.metrics.inc("taskmachine_claims_total", outcome=outcome)
                try:
                    await message.ack()
                except Exception:  # the channel is gone: the claim comes back and is answered again
                    log.warning("claim not acknowledged", extra={"run_id": str(claim.run_id)})

    async def _decide(self, batch: list[_Claim]) -> list[ClaimOutcome]:
        try:
            async with self.session_factory() as session:
                if on_postgresql(session):
                    # One statement, atomic by itself (see claim_many): no BEGIN or COMMIT
                    # round trips on the way from the daemon's claim to its answer.
                    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                accepted = await run_domain.claim_many(
                    session,
                    [(machine_id, claim.run_id, claim.attempt) for machine_id, claim, _ in batch],
                    self.settings.lease_seconds,
                )
                await session.commit()
        except Exception:
            log.exception("claims not decided", extra={"claims": len(batch)})
            return ["unavailable"] * len(batch)
        return ["accepted" if ok else "refused" for ok in accepted]

    async def _answer(self, machine_id: str, claim: RunClaim, outcome: ClaimOutcome) -> None:
        answer = ClaimAnswer(
            claim_id=claim.claim_id,
            run_id=claim.run_id,
            attempt=claim.attempt,
            outcome=outcome,
            reason=REFUSED if outcome == "refused" else None,
        )
        await self.link.publish_control(machine_id, answer, persistent=False)
