"""Consume `tama.server.heartbeats`: machines' heartbeats, written in batches.

The sender is trusted by the broker-validated `user_id` property only: a heartbeat without one,
or whose routing key names another machine, is dead-lettered. A body that fails validation is
dead-lettered and logged, never retried. A delivery is acknowledged only after its batch
commits, so a crash re-delivers instead of losing it.

This is the server's hottest path (thousands of deliveries a second), so it consumes on the
channel's aiormq layer with a plain callback that only queues the delivery (no message object,
nothing awaited), validates a batch in slices so the API's requests are not held up behind a
long stretch of parsing, and sends one `basic.ack(multiple=True)` per committed batch. That is
safe because the queue holds heartbeats only and delivery tags rise in delivery order on a
channel: when a batch commits, every earlier delivery is in it or was already rejected.

A heartbeat's effect is measured in seconds, a person's request in milliseconds: each slice of
validation and each transaction first waits (briefly, see `Foreground`) for the API's requests
in flight, so ingest fills the gaps between requests instead of lengthening them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractRobustChannel

from taskmachine.background import stop_task
from taskmachine.db import SessionFactory
from taskmachine.dispatcher.heartbeats import apply_heartbeats, latest_per_machine
from taskmachine.foreground import Foreground
from taskmachine.metrics import Metrics
from taskmachine.models import utcnow
from taskmachine.settings import Settings
from taskmachine.wire.errors import WireError
from taskmachine.wire.messages import Heartbeat
from taskmachine.wire.topology import (
    MACHINE_USERNAME_PREFIX,
    machine_id_from_username,
    parse_event_routing_key,
)

log = logging.getLogger("taskmachine.ingest")

# After a batch fails to write, wait this long before the next try (the database is the problem).
RETRY_PAUSE_SECONDS = 1.0
# Heartbeats validated between two chances for other tasks to run (about 1 ms of CPU).
PARSE_SLICE = 64
_KEY_HEAD, _KEY_TAIL = "machine.", ".heartbeat"


@dataclass(slots=True)
class _Delivery:
    channel: aiormq.abc.AbstractChannel
    tag: int
    # None: to be dead-lettered (rejected in order, before the batch around it is acked).
    beat: Heartbeat | None


class HeartbeatIngest:
    def __init__(
        self,
        settings: Settings,
        session_factory: SessionFactory,
        metrics: Metrics,
        foreground: Foreground | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.metrics = metrics
        # Each slice of parsing and each transaction waits (boundedly) for the API's requests.
        self.foreground = foreground or Foreground()
        # Deliveries not yet validated: that happens in slices when their batch is written.
        self._raw: list[aiormq.abc.DeliveredMessage] = []
        self._first_pending_at = 0.0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        # One batch written at a time: a second transaction beside it would only wait for the
        # first one's locks (on SQLite, for the engine's one connection), while the heartbeats
        # arriving meanwhile can join the next batch instead.
        self._flush_lock = asyncio.Lock()
        # On SQLite the API's requests wait for the engine's one connection while a transaction
        # holds it: short transactions keep that wait short. PostgreSQL has a pool.
        bind = session_factory.kw.get("bind")
        sqlite = bind is not None and bind.dialect.name == "sqlite"
        self._chunk = settings.heartbeat_sqlite_transaction_size if sqlite else 1 << 30
        self._flusher: asyncio.Task[None] | None = None
        self._channel: AbstractChannel | None = None
        self._queue_name = ""
        self._consumer: tuple[aiormq.abc.AbstractChannel, str] | None = None
        metrics.describe("taskmachine_heartbeats_total", "counter", "Heartbeats written.")
        metrics.describe("taskmachine_events_rejected_total", "counter", "Events dead-lettered.")

    async def start(self, channel: AbstractChannel, queue_name: str) -> None:
        """Consume `queue_name` on `channel` (the channel's prefetch bounds what is in flight)."""
        self._channel, self._queue_name = channel, queue_name
        self._flusher = asyncio.create_task(self._flush_loop(), name="heartbeat-flusher")
        if isinstance(channel, AbstractRobustChannel):
            # aio-pika restores its own consumers after a reconnect, not this one.
            channel.reopen_callbacks.add(self._on_reopen)
        await self._consume()

    async def stop(self) -> None:
        if isinstance(self._channel, AbstractRobustChannel):
            self._channel.reopen_callbacks.discard(self._on_reopen)
        if self._consumer is not None:
            underlay, tag = self._consumer
            self._consumer = None
            with contextlib.suppress(Exception):
                await underlay.basic_cancel(tag)
        await stop_task(self._flusher)
        await self._flush(everything=True)

    async def _consume(self) -> None:
        assert self._channel is not None
        underlay = await self._channel.get_underlay_channel()
        ok = await underlay.basic_consume(self._queue_name, self._on_delivery)
        assert ok.consumer_tag is not None
        self._consumer = (underlay, ok.consumer_tag)

    async def _on_reopen(self, _channel: object) -> None:
        # Deliveries of the closed channel went back to the queue; their tags mean nothing now.
        await self._consume()

    async def _on_delivery(self, message: aiormq.abc.DeliveredMessage) -> None:
        """Called once per delivery: only queues it (see the module docstring)."""
        if not self._raw:
            self._first_pending_at = time.monotonic()
            self._wake.set()
        self._raw.append(message)
        if len(self._raw) >= self.settings.heartbeat_batch_size:
            self._full.set()

    def _accept(self, message: aiormq.abc.DeliveredMessage) -> Heartbeat | None:
        """The heartbeat, or None (logged) when it is to be dead-lettered."""
        routing_key = message.routing_key or ""
        user_id = message.header.properties.user_id
        why = ""
        # The usual case without splitting or UUID parsing: `user_id` is validated by the broker
        # and machine users are named by the server, so equal names are one canonical id.
        machine_id = routing_key[len(_KEY_HEAD) : -len(_KEY_TAIL)]
        if not (
            routing_key.startswith(_KEY_HEAD)
            and routing_key.endswith(_KEY_TAIL)
            and user_id == MACHINE_USERNAME_PREFIX + machine_id
        ):
            key = parse_event_routing_key(routing_key)
            if key is None:
                why = "routing key has no known shape"
            elif machine_id_from_username(user_id) != key.machine_id:
                why = "sender does not match the routing key"
            else:
                why = f"{key.kind} is not a heartbeat"
        else:
            try:
                beat = Heartbeat.parse(message.body)
            except WireError as exc:
                why = str(exc)
            else:
                if str(beat.machine_id) == machine_id:
                    return beat
                why = "heartbeat names another machine"
        self.metrics.inc("taskmachine_events_rejected_total")
        log.warning(
            "event dead-lettered: %s", why, extra={"routing_key": routing_key, "user_id": user_id}
        )
        return None

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._raw:
                delay = self.settings.heartbeat_batch_seconds - (
                    time.monotonic() - self._first_pending_at
                )
                if delay > 0 and not self._full.is_set():
                    # A batch waits for company up to heartbeat_batch_seconds, not when full.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), delay)
                await self._flush()

    async def _flush(self, *, everything: bool = False) -> None:
        async with self._flush_lock:
            while self._raw:
                size = self.settings.heartbeat_batch_size
                batch, self._raw = self._raw[:size], self._raw[size:]
                self._first_pending_at = time.monotonic()
                if len(self._raw) < size:
                    self._full.clear()
                await self._write(await self._parse(batch))
                if not everything:
                    return

    async def _parse(self, batch: list[aiormq.abc.DeliveredMessage]) -> list[_Delivery]:
        """Validate a batch in slices, letting the API's requests run in between."""
        parsed: list[_Delivery] = []
        for start in range(0, len(batch), PARSE_SLICE):
            if start:
                await asyncio.sleep(0)
            await self.foreground.quiet()
            for message in batch[start : start + PARSE_SLICE]:
                assert message.delivery_tag is not None
                parsed.append(
                    _Delivery(message.channel, message.delivery_tag, self._accept(message))
                )
        return parsed

    async def _write(self, batch: list[_Delivery]) -> None:
        # Rejections first: a later multiple-ack must not settle them as delivered.
        for item in batch:
            if item.beat is None:
                with contextlib.suppress(Exception):  # a closed channel re-delivers them
                    await item.channel.basic_reject(item.tag, requeue=False)
        beats = [item.beat for item in batch if item.beat is not None]
        # The highest tag per channel (a reconnect starts a new channel and new tags).
        last: dict[aiormq.abc.AbstractChannel, int] = {}
        for item in batch:
            last[item.channel] = max(item.tag, last.get(item.channel, 0))
        if not beats:
            return
        # Newest beat per machine, in id order, cut into transactions of `_chunk` machines.
        latest = [beat for _, beat in sorted(latest_per_machine(beats).items())]
        try:
            for start in range(0, len(latest), self._chunk):
                await self.foreground.quiet()
                async with self.session_factory() as session:
                    await apply_heartbeats(
                        session,
                        latest[start : start + self._chunk],
                        utcnow(),
                        self.settings.machine_online_window_seconds,
                        self.settings.lease_seconds,
                    )
                    await session.commit()
        except Exception:
            # The database is the problem, not the messages: give them back for another try.
            log.exception("heartbeat batch not written; returned to the queue")
            for channel, tag in last.items():
                with contextlib.suppress(Exception):
                    await channel.basic_nack(tag, multiple=True, requeue=True)
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            return
        for channel, tag in last.items():
            # A closed channel's deliveries come again; writing them twice changes nothing.
            with contextlib.suppress(Exception):
                await channel.basic_ack(tag, multiple=True)
        self.metrics.inc("taskmachine_heartbeats_total", len(beats))
