"""Live fan-out of committed changes to GraphQL subscriptions.

Domain code calls `taskmachine.domain.events.emit` inside a transaction; the events ride on the
session and are handed to the hub from SQLAlchemy's after_commit hook, so nothing is published
for a change that rolled back. This process's own subscribers get an event right there, in commit
order, without waiting for a broker round trip. With a broker, the event is also published to the
`tama.live` topic exchange, stamped with this hub's origin id (events that queued up meanwhile
go out together, as one message), and every process consumes its own exclusive queue, so any
process can serve any subscription; a hub skips its own echo.

A writer that knows its change will commit (transcript output from the run's holder, see
`taskmachine.dispatcher.run_events`) may hand it to this process's subscribers ahead of the commit
with `deliver_early`. Until the writer calls `settle_early`, the event stays in a pending buffer
that every new subscription of its topic starts with, so a subscriber that joins meanwhile and
reads what is stored misses nothing. Other processes still get it only after the commit: the
writer puts it under `EARLY_KEY` on the session instead of emitting it, and the after-commit hook
publishes it to `tama.live` without delivering it here again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from sqlalchemy import event
from sqlalchemy.orm import Session

from taskmachine.background import stop_task
from taskmachine.domain.events import KICK_KEY, PENDING_KEY

log = logging.getLogger(__name__)

LIVE_EXCHANGE = "tama.live"
SUBSCRIBER_QUEUE_SIZE = 10_000
# A `tama.live` message carries a JSON list of [topic, payload] pairs, in commit order.
BATCH_TYPE = "tama.live.batch"
# Stop adding events to a message past this much JSON (an output chunk can be 64 KB).
MAX_BATCH_BYTES = 256 * 1024
# Session info key: events delivered here early (`deliver_early`) that only other processes
# still need once the transaction commits.
EARLY_KEY = "taskmachine.live.early"

Event = tuple[str, dict[str, Any]]
Watcher = Callable[[str, dict[str, Any]], None]


class LiveHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._outgoing: asyncio.Queue[Event] = asyncio.Queue()
        self._connection: AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._pump: asyncio.Task[None] | None = None
        # Stamped on what this hub publishes, so it can skip its own events coming back.
        self.origin = uuid.uuid4().hex
        # In-process workers woken after a commit that concerns them ("dispatch", "relay"…).
        self.kicks: dict[str, asyncio.Event] = {}
        # Per topic, events delivered ahead of their commit, not yet settled, in delivery order.
        self._early: dict[str, list[dict[str, Any]]] = {}
        # Told of every committed event (this process's and other processes').
        self._watchers: list[Watcher] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, amqp_url: str | None) -> None:
        if amqp_url:
            self._connection = await aio_pika.connect_robust(amqp_url)
            # No publisher confirms: a live event is a hint (the database has the truth), and
            # waiting for each confirm would put a round trip between consecutive events.
            channel = await self._connection.channel(publisher_confirms=False)
            self._exchange = await channel.declare_exchange(
                LIVE_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(self._exchange, routing_key="#")
            await queue.consume(self._on_message, no_ack=True)
            self._pump = asyncio.create_task(self._run_pump(), name="live-pump")

    async def stop(self) -> None:
        await stop_task(self._pump)
        if self._connection is not None:
            await self._connection.close()

    def bind(self, session_class: type[Session]) -> None:
        """Publish what a session collected once its transaction commits; drop it on rollback."""

        def after_commit(session: Session) -> None:
            for topic, payload in session.info.pop(PENDING_KEY, []):
                self._deliver(topic, payload)
                if self._exchange is not None:
                    self._outgoing.put_nowait((topic, payload))
            for topic, payload in session.info.pop(EARLY_KEY, []):
                if self._exchange is not None:  # delivered here already
                    self._outgoing.put_nowait((topic, payload))
            for name in session.info.pop(KICK_KEY, ()):
                self.kick(name)

        def after_rollback(session: Session) -> None:
            session.info.pop(PENDING_KEY, None)
            session.info.pop(EARLY_KEY, None)
            session.info.pop(KICK_KEY, None)

        event.listen(session_class, "after_commit", after_commit)
        event.listen(session_class, "after_soft_rollback", lambda s, _t: after_rollback(s))

    def kick(self, name: str) -> None:
        self.kicks.setdefault(name, asyncio.Event()).set()

    def kick_event(self, name: str) -> asyncio.Event:
        return self.kicks.setdefault(name, asyncio.Event())

    # -- publishing ------------------------------------------------------------------------

    async def _run_pump(self) -> None:
        # One pump keeps events in commit order for the other processes. What queued up while
        # it published goes out as one message: under load a run's ~20 events would otherwise
        # cost ~20 publishes here and ~20 deliveries in every process, this one's echo included.
        while True:
            first = await self._outgoing.get()
            items = [json.dumps(first)]  # each [topic, payload], encoded once
            size = len(items[0])
            while size < MAX_BATCH_BYTES and not self._outgoing.empty():
                items.append(json.dumps(self._outgoing.get_nowait()))
                size += len(items[-1])
            exchange = self._exchange
            if exchange is None:
                continue
            try:
                await exchange.publish(
                    aio_pika.Message(
                        f"[{','.join(items)}]".encode(), app_id=self.origin, type=BATCH_TYPE
                    ),
                    routing_key=first[0],
                    timeout=5,
                )
            except Exception:  # a lost live event must not stop the pump; the DB has the truth
                log.exception("live events not published", extra={"events": len(items)})

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if message.app_id == self.origin:
            return  # delivered here at commit already
        events = _parse_batch(message)
        if events is None:
            log.warning("malformed live event dropped", extra={"topic": message.routing_key})
            return
        for topic, payload in events:
            self._deliver(topic, payload)

    def _deliver(self, topic: str, payload: dict[str, Any]) -> None:
        for watcher in self._watchers:
            watcher(topic, payload)
        self._fan_out(topic, payload)

    def _fan_out(self, topic: str, payload: dict[str, Any]) -> None:
        for queue in self._subscribers.get(topic, ()):
            try:
                queue.put_nowait(payload)
            except asyncio.QueueFull:
                log.warning("slow subscriber dropped an event", extra={"topic": topic})

    def watch(self, watcher: Watcher) -> None:
        """Call `watcher(topic, payload)` for every committed event, before subscribers get it."""
        self._watchers.append(watcher)

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    # -- ahead of the commit ---------------------------------------------------------------

    def deliver_early(self, topic: str, payload: dict[str, Any]) -> None:
        """Hand an event of a transaction still in progress to this process's subscribers now.
        Only for a change the caller knows will commit, or be retried with the same identity
        (subscribers must tell a repeat by its payload); settle it with `settle_early` once the
        transaction is over, committed or not."""
        self._early.setdefault(topic, []).append(payload)
        self._fan_out(topic, payload)

    def settle_early(self, topic: str, payloads: list[dict[str, Any]]) -> None:
        """The transaction behind these early events is over: new subscribers no longer start
        with them (committed, they read them from the database)."""
        pending = self._early.get(topic)
        if pending is None:
            return
        settled = {id(payload) for payload in payloads}
        pending[:] = [payload for payload in pending if id(payload) not in settled]
        if not pending:
            del self._early[topic]

    # -- subscribing -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self, *topics: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of the topics' events from now on. It starts with the events delivered ahead
        of a commit that is still in progress, which a read of the database would miss."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)
        for topic in topics:
            self._subscribers.setdefault(topic, set()).add(queue)
            for payload in self._early.get(topic, ()):
                queue.put_nowait(payload)
        try:
            yield queue
        finally:
            for topic in topics:
                subscribers = self._subscribers.get(topic)
                if subscribers is not None:
                    subscribers.discard(queue)
                    if not subscribers:
                        del self._subscribers[topic]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())


def _parse_batch(message: AbstractIncomingMessage) -> list[Event] | None:
    """The events of a `tama.live` message, or None if it is not a well-formed batch."""
    if message.type != BATCH_TYPE:
        return None
    try:
        events = json.loads(message.body)
    except ValueError:
        return None
    if not isinstance(events, list):
        return None
    parsed: list[Event] = []
    for item in events:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], dict)
        ):
            return None
        parsed.append((item[0], item[1]))
    return parsed
