"""Claims over the broker: a daemon's RunClaim in, a ClaimAnswer out on its control queue.

The same conditional update as the `claimRun` mutation (taskmachine.domain.runs.claim), without
an HTTP request, a token check and a GraphQL document per job: the sender is the broker-checked
`user_id`, already matched to the routing key by RunEventQueue. The answer is transient (a lost
one makes the daemon ask again, and the machine holding a claim is told yes again). A claim
whose body is malformed or names another run is dead-lettered.
"""

from __future__ import annotations

import logging
import uuid

from aio_pika.abc import AbstractIncomingMessage

from taskmachine.db import SessionFactory
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
        outcome = await self._decide(uuid.UUID(key.machine_id), claim)
        try:
            await self._answer(key.machine_id, claim, outcome)
        except Exception:
            # The daemon times out and asks again; an accepted claim is then accepted again.
            log.warning("claim answer not sent", exc_info=True, extra={"run_id": str(claim.run_id)})
        self.metrics.inc("taskmachine_claims_total", outcome=outcome)
        await message.ack()

    async def _decide(self, machine_id: uuid.UUID, claim: RunClaim) -> ClaimOutcome:
        try:
            async with self.session_factory() as session:
                accepted = await run_domain.claim(
                    session, machine_id, claim.run_id, claim.attempt, self.settings.lease_seconds
                )
                await session.commit()
        except Exception:
            log.exception("claim not decided", extra={"run_id": str(claim.run_id)})
            return "unavailable"
        return "accepted" if accepted else "refused"

    async def _answer(self, machine_id: str, claim: RunClaim, outcome: ClaimOutcome) -> None:
        answer = ClaimAnswer(
            claim_id=claim.claim_id,
            run_id=claim.run_id,
            attempt=claim.attempt,
            outcome=outcome,
            reason=REFUSED if outcome == "refused" else None,
        )
        await self.link.publish_control(machine_id, answer, persistent=False)
