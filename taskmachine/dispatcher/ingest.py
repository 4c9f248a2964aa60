"""Consume `tama.server.heartbeats`: machines' heartbeats, written in batches.

The sender is trusted by the broker-validated `user_id` property only: a heartbeat without one,
or whose routing key names another machine, is dead-lettered. A body that fails validation is
dead-lettered and logged, never retried. A delivery is acknowledged only after its batch
commits, so a crash re-delivers instead of losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from taskmachine.db import SessionFactory
from taskmachine.dispatcher.heartbeats import apply_heartbeats
from taskmachine.metrics import Metrics
from taskmachine.models import utcnow
from taskmachine.settings import Settings
from taskmachine.wire.errors import WireError
from taskmachine.wire.messages import Heartbeat
from taskmachine.wire.topology import machine_id_from_username, parse_event_routing_key

log = logging.getLogger("taskmachine.ingest")


@dataclass
class _Pending:
    beat: Heartbeat
    message: AbstractIncomingMessage


class HeartbeatIngest:
    def __init__(
        self, settings: Settings, session_factory: SessionFactory, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.metrics = metrics
        self._pending: list[_Pending] = []
        self._first_pending_at = 0.0
        self._wake = asyncio.Event()
        # One batch written at a time: a second transaction beside it would only wait for the
        # first one's locks (on SQLite, the write lock, polled in sleeps), while the heartbeats
        # arriving meanwhile can join the next batch instead.
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._consumer_tag: str | None = None
        self._queue: AbstractQueue | None = None
        metrics.describe("taskmachine_heartbeats_total", "counter", "Heartbeats written.")
        metrics.describe("taskmachine_events_rejected_total", "counter", "Events dead-lettered.")

    async def start(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self._flusher = asyncio.create_task(self._flush_loop(), name="heartbeat-flusher")
        self._consumer_tag = await queue.consume(self._on_message)

    async def stop(self) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._flush()

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
        if key is None:
            await self._reject(message, "routing key has no known shape")
            return
        sender = machine_id_from_username(message.user_id)
        if sender is None or sender != key.machine_id:
            await self._reject(message, "sender does not match the routing key")
            return
        if key.kind != "heartbeat":
            await self._reject(message, f"{key.kind} is not a heartbeat")
            return
        try:
            beat = Heartbeat.parse(message.body)
        except WireError as exc:
            await self._reject(message, str(exc))
            return
        if beat.machine_id != uuid.UUID(key.machine_id):
            await self._reject(message, "heartbeat names another machine")
            return
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append(_Pending(beat, message))
        if len(self._pending) >= self.settings.heartbeat_batch_size:
            await self._flush()
        else:
            self._wake.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            delay = self.settings.heartbeat_batch_seconds - (
                time.monotonic() - self._first_pending_at
            )
            if delay > 0:
                await asyncio.sleep(delay)
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            await self._write_pending()

    async def _write_pending(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            async with self.session_factory() as session:
                await apply_heartbeats(
                    session,
                    [p.beat for p in batch],
                    utcnow(),
                    self.settings.machine_online_window_seconds,
                    self.settings.lease_seconds,
                )
                await session.commit()
        except Exception:
            # The database is the problem, not the messages: give them back for another try.
            log.exception("heartbeat batch not written; returned to the queue")
            for pending in batch:
                with contextlib.suppress(Exception):
                    await pending.message.nack(requeue=True)
            await asyncio.sleep(1)
            return
        for pending in batch:
            await pending.message.ack()
        self.metrics.inc("taskmachine_heartbeats_total", len(batch))
