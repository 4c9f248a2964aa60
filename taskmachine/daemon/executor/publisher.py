"""Run events out of the spool and onto `tama.events`, in order, each confirmed by the broker.

`emit` writes the event to the spool (one SQLite statement), then hands it to the sender, the one
place that publishes; nothing is published before it is in the spool. The sender publishes each
event (persistent, as the machine's broker user, with a confirm and a timeout) and deletes what
the broker confirmed from the spool. Up to `WINDOW` publishes await their confirms at once, in
spool order: one channel delivers them in the order they were published, so a dropped connection
leaves a prefix at the broker, and what follows goes out again in order.

The sender works in two modes. Caught up, it publishes the events `emit` hands it, at once and in
spool order (no read of the spool on a line's way out). Otherwise it walks the spool, oldest
first: on start, after `attach` (a new connection), after a failed publish, and when it fell so
far behind that the handed events took too much memory. Having read everything in the spool, it
is caught up again. When a publish fails the sender stops, and the next pass starts again from
the oldest unconfirmed event: after `attach` at once, otherwise after a short backoff (a robust
connection comes back by itself). A re-sent event may reach the server twice; its (run, attempt,
seq) tells the server it already has it. Only a broker's nack (an internal error of the queue)
can put an event behind later ones, which the server applies by their (run, attempt, seq) too.

Spool ids grow in commit order and `emit` appends and hands over under one lock, so the handed
events are in id order too: the sender can tell by id alone what it already sent from the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractExchange

from taskmachine.background import stop_task
from taskmachine.daemon.executor.spool import RunEvent, Spool, SpooledEvent
from taskmachine.daemon.waits import Backoff
from taskmachine.wire.topology import run_event_routing_key

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 10.0
_BATCH = 256
# Publishes awaiting their confirms at most. Waiting for each confirm before the next publish
# (several ms under load) would cap a machine at a few hundred events a second.
WINDOW = 64
# Handed events held in memory at most; past this the sender reads them from the spool instead.
FRESH_MAX_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class _InFlight:
    spool_id: int
    confirm: asyncio.Future[None]


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
        self._append_lock = asyncio.Lock()
        # Events emitted and not yet published, in id order (see the module's docstring).
        self._fresh: deque[SpooledEvent] = deque()
        self._fresh_bytes = 0
        self._caught_up = False  # everything unsent in the spool is in _fresh
        self._overflows = 0  # times _fresh was dropped for its size
        self._sent_upto = 0  # the highest spool id published in this pass
        self._sending_on: AbstractExchange | None = None
        self._confirmed: list[int] = []  # confirmed, not yet deleted from the spool
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
        await stop_task(self._task)
        self._task = None

    async def emit(self, event: RunEvent) -> None:
        """Write the event to the spool (durable from here on) and have the sender publish it."""
        key = run_event_routing_key(self._machine_id, str(event.run_id), event.kind)
        async with self._append_lock:  # hand events over in the order their ids were given
            spooled = await self._spool.append(event, key)
            self._fresh.append(spooled)
            self._fresh_bytes += len(spooled.body)
        if self._fresh_bytes > FRESH_MAX_BYTES:
            # The sender is far behind (the broker is away): the spool alone keeps these.
            self._fresh.clear()
            self._fresh_bytes = 0
            self._caught_up = False
            self._overflows += 1
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

    def _rewind(self) -> None:
        """Send from the oldest event in the spool on the next pass."""
        self._caught_up = False
        self._sent_upto = 0

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            exchange = self._exchange
            if exchange is None:
                continue
            if exchange is not self._sending_on:
                self._sending_on = exchange
                self._rewind()  # a new connection: replay what the spool holds
            if await self._send_all(exchange):
                self._backoff.reset()
                self._idle.set()
            else:
                self._rewind()
                self.failures += 1
                delay = self._backoff.next_delay()
                if self._retry is not None:
                    self._retry.cancel()
                self._retry = asyncio.get_running_loop().call_later(delay, self._kick)

    async def _send_all(self, exchange: AbstractExchange) -> bool:
        """Publish until nothing is left to send and all of it is confirmed; False if a publish
        failed."""
        in_flight: deque[_InFlight] = deque()
        try:
            while self._exchange is exchange:
                if self._caught_up:
                    event = self._next_fresh()
                    if event is None:
                        if not in_flight:
                            break
                        # Whatever is emitted meanwhile goes out after this confirm at most.
                        await self._confirm_oldest(in_flight)
                        continue
                    await self._send(exchange, event, in_flight)
                    continue
                overflows = self._overflows
                # Else the walk from the oldest would send them again; what is in flight is
                # above `_sent_upto`, where the walk goes on.
                await self._delete_confirmed()
                batch = await self._spool.pending(self._sent_upto, _BATCH)
                if not batch:
                    # Whatever was appended after that read has been (or will be) handed over,
                    # unless the handed events were dropped meanwhile.
                    self._caught_up = overflows == self._overflows
                    continue
                for event in batch:
                    await self._send(exchange, event, in_flight)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "run events wait in the spool: publish failed (%s)",
                str(exc) or type(exc).__name__,
            )
            return False
        finally:
            # Unconfirmed events stay in the spool and go out again on the next pass.
            for flight in in_flight:
                flight.confirm.cancel()
            await asyncio.gather(*(f.confirm for f in in_flight), return_exceptions=True)
            await self._delete_confirmed()

    async def _send(
        self, exchange: AbstractExchange, event: SpooledEvent, in_flight: deque[_InFlight]
    ) -> None:
        """Start publishing `event`, then wait for confirms only while `WINDOW` are out."""
        # Tasks start in the order they were created, and the publish takes the channel's lock
        # before it first yields, so the broker gets the events in spool order.
        confirm = asyncio.create_task(self._publish(exchange, event))
        in_flight.append(_InFlight(event.id, confirm))
        self._sent_upto = event.id
        while len(in_flight) >= WINDOW:
            await self._confirm_oldest(in_flight)
        if len(self._confirmed) >= _BATCH:  # a steady stream never idles
            await self._delete_confirmed()

    async def _confirm_oldest(self, in_flight: deque[_InFlight]) -> None:
        """Wait for the oldest publish in flight; it raises if the broker did not take it."""
        await in_flight[0].confirm
        flight = in_flight.popleft()
        self._confirmed.append(flight.spool_id)
        self.published += 1

    def _next_fresh(self) -> SpooledEvent | None:
        """The oldest handed event not yet sent (one the spool walk sent is dropped)."""
        while self._fresh:
            event = self._fresh.popleft()
            self._fresh_bytes -= len(event.body)
            if event.id > self._sent_upto:
                return event
        return None

    async def _delete_confirmed(self) -> None:
        if self._confirmed:
            confirmed, self._confirmed = self._confirmed, []
            await self._spool.delete(confirmed)

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
