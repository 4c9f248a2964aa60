"""The control consumer: what the server tells this one machine (update, cancel a run, the
answer to a claim).

Each message is acknowledged once it is accepted, before acting on it: an update ends with this
process exiting, and a message left unacknowledged would be redelivered to the new version and
update it again. A message that does not parse is rejected without requeue (the broker
dead-letters it to tama.dead) and logged; it never stops the consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from taskmachine.daemon.executor import Executor
from taskmachine.wire.control import CancelRun, ClaimAnswer, UpdateRequest, parse_control
from taskmachine.wire.errors import WireError

log = logging.getLogger(__name__)

UpdateHandler = Callable[[UpdateRequest], Awaitable[None]]


class ControlConsumer:
    def __init__(self, *, executor: Executor, on_update: UpdateHandler) -> None:
        self._executor = executor
        self._on_update = on_update
        self.rejected = 0

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            request = parse_control(message.body)
        except WireError as exc:
            self.rejected += 1
            log.warning("control message dead-lettered: %s", exc)
            await message.reject(requeue=False)
            return
        await message.ack()
        if isinstance(request, ClaimAnswer):
            self._executor.claim_answered(request)
        elif isinstance(request, UpdateRequest):
            log.info("update requested: %s", request.target_version or "newest release")
            await self._on_update(request)
        elif isinstance(request, CancelRun):
            await self._executor.cancel(request.run_id, request.attempt)
