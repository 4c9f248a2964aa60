"""Run events out of the spool and onto `tama.events`, in order, each confirmed by the broker.

`emit` only writes to the spool and wakes the sender; the sender is the one place that publishes.
It walks the spool oldest first, publishes each event (persistent, as the machine's broker user,
with a confirm and a timeout), and deletes what the broker confirmed. When a publish fails the
sender stops, and the next pass starts again from the oldest unconfirmed event: after
`attach` (a new connection) at once, otherwise after a short backoff (a robust connection comes
back by itself). A re-sent event may reach the server twice; its (run, attempt, seq) tells the
server it already has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika
from aio_pika.abc import AbstractExchange

from taskmachine.daemon.executor.spool import RunEvent, Spool, SpooledEvent
from taskmachine.daemon.waits import Backoff
from taskmachine.wire.topology import run_event_routing_key

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 10.0
_BATCH = 256


class EventPublisher:
    def __init__(
        self,
        spool: Spool,
        machine_id: str,
        user_id: str,
        *,
        publish_timeout: float = PUBLISH_TIMEOUT,
        backoff: Backoff | None = None,
    ) -> None:
        self._spool = spool
        self._machine_id = machine_id
        self._user_id = user_id
        self._timeout = publish_timeout
        self._backoff = backoff or Backoff(base=0.2, cap=5.0)
        self._exchange: AbstractExchange | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._retry: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        # Counters for logs and tests.
        self.published = 0
        self.failures = 0

    def attach(self, exchange: AbstractExchange) -> None:
        """Publish through this exchange from now on; replays the spool from its oldest event."""
        self._exchange = exchange
        self._backoff.reset()
        self._kick()

    def detach(self) -> None:
        self._exchange = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tama-run-events")
            self._kick()

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def emit(self, event: RunEvent) -> None:
        """Write the event to the spool (durable from here on) and have the sender publish it."""
        key = run_event_routing_key(self._machine_id, str(event.run_id), event.kind)
        await self._spool.append(event, key)
        self._kick()

    async def wait_sent(self, within: float) -> bool:
        """Wait until the spool holds nothing unconfirmed; False if that took too long."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while await self._spool.count():
            self._idle.clear()
            self._kick()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.5)):
                    await self._idle.wait()
        return True

    def _kick(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            exchange = self._exchange
            if exchange is None:
                continue
            if await self._send_all(exchange):
                self._backoff.reset()
                self._idle.set()
            else:
                self.failures += 1
                delay = self._backoff.next_delay()
                if self._retry is not None:
                    self._retry.cancel()
                self._retry = asyncio.get_running_loop().call_later(delay, self._kick)

    async def _send_all(self, exchange: AbstractExchange) -> bool:
        """One pass over the spool, oldest first; False if a publish failed."""
        after = 0
        while True:
            batch = await self._spool.pending(after, _BATCH)
            if not batch:
                return True
            confirmed: list[int] = []
            try:
                for event in batch:
                    await self._publish(exchange, event)
                    confirmed.append(event.id)
                    after = event.id
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "run events wait in the spool: publish failed (%s)",
                    str(exc) or type(exc).__name__,
                )
                return False
            finally:
                await self._spool.delete(confirmed)
                self.published += len(confirmed)

    async def _publish(self, exchange: AbstractExchange, event: SpooledEvent) -> None:
        message = aio_pika.Message(
            event.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            user_id=self._user_id,
            message_id=f"{event.run_id}:{event.attempt}:{event.seq}",
            type=event.kind,
        )
        await exchange.publish(message, routing_key=event.routing_key, timeout=self._timeout)
