"""Consume a queue of run events machines publish: `tama.server.events` (start, output, finish)
or `tama.server.claims` (claims).

The sender is trusted by the broker-validated `user_id` property only: an event without one, or
whose routing key names another machine, is dead-lettered, as is a kind nobody handles. Each
handler owns acknowledging what it is given.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from taskmachine.metrics import Metrics
from taskmachine.wire.topology import (
    EventRoutingKey,
    machine_id_from_username,
    parse_event_routing_key,
)

log = logging.getLogger("taskmachine.events")

EventHandler = Callable[[EventRoutingKey, AbstractIncomingMessage], Awaitable[None]]


class RunEventQueue:
    def __init__(
        self,
        metrics: Metrics,
        *,
        handlers: dict[str, EventHandler] | None = None,
        default: EventHandler | None = None,
    ) -> None:
        self.metrics = metrics
        # By routing-key kind ("claim", …); `default` takes the rest.
        self.handlers = handlers or {}
        self.default = default
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        metrics.describe("taskmachine_events_rejected_total", "counter", "Events dead-lettered.")

    async def start(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self._consumer_tag = await queue.consume(self._on_message)

    async def stop(self) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        self._consumer_tag = None

    async def _reject(self, message: AbstractIncomingMessage, why: str) -> None:
        self.metrics.inc("taskmachine_events_rejected_total")
        log.warning(
            "event dead-lettered: %s",
            why,
            extra={"routing_key": message.routing_key, "user_id": message.user_id},
        )
        await message.reject(requeue=False)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        key = parse_event_routing_key(message.routing_key or "")
        if key is None or key.run_id is None:
            await self._reject(message, "routing key is not a run event's")
            return
        sender = machine_id_from_username(message.user_id)
        if sender is None or sender != key.machine_id:
            await self._reject(message, "sender does not match the routing key")
            return
        handler = self.handlers.get(key.kind, self.default)
        if handler is None:
            await self._reject(message, f"no handler for {key.kind} events")
            return
        await handler(key, message)
