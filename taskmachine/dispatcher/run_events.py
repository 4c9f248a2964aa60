"""Apply run events from daemons, each exactly once.

Events are numbered per attempt. Transcript output is stored under (run, attempt, seq), a unique
key, so a re-delivered chunk is dropped; `started` and `finished` are conditional moves, so a
repeat changes nothing. Events of an attempt the server has moved past are acknowledged and
ignored. An event for a run its sender does not hold is dead-lettered.

One run's events are applied one at a time, in the order they were delivered: aio-pika hands
every delivery to a task of its own, and a burst (a replayed spool, a server back from a restart)
would otherwise apply `finished` beside or before `started` (on PostgreSQL both then moved the
run from `claimed`, and the later commit won). The run's row is also read for update, so
appliers in two server processes cannot both move it from the same state either.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import sqlalchemy as sa
from aio_pika.abc import AbstractIncomingMessage

from taskmachine.db import SessionFactory
from taskmachine.domain import runs as run_domain
from taskmachine.domain.events import emit, run_topic
from taskmachine.live import LiveHub
from taskmachine.models import Run, TranscriptChunk, utcnow
from taskmachine.wire.errors import WireError
from taskmachine.wire.runs import RunFinished, RunOutput, RunStarted, parse_run_event
from taskmachine.wire.topology import EventRoutingKey

log = logging.getLogger("taskmachine.runs")


class RunEvents:
    def __init__(self, session_factory: SessionFactory, hub: LiveHub) -> None:
        self.session_factory = session_factory
        self.hub = hub
        # One lock per run with events in flight; asyncio.Lock serves waiters first come first.
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    async def handle(self, key: EventRoutingKey, message: AbstractIncomingMessage) -> None:
        # Taken before the first await, so deliveries queue on the lock in delivery order.
        run_key = key.run_id or ""
        lock, users = self._locks.setdefault(run_key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                await self._handle(key, message)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[run_key]

    async def _handle(self, key: EventRoutingKey, message: AbstractIncomingMessage) -> None:
        try:
            event = parse_run_event(message.body)
        except WireError as exc:
            log.warning(
                "run event dead-lettered: %s", exc, extra={"routing_key": message.routing_key}
            )
            await message.reject(requeue=False)
            return
        if key.run_id != event.run_id.hex and key.run_id != str(event.run_id):
            log.warning("run event names another run", extra={"routing_key": message.routing_key})
            await message.reject(requeue=False)
            return
        try:
            applied = await self._apply(uuid.UUID(key.machine_id), event)
        except Exception:
            log.exception("run event not applied; returned to the queue")
            await message.nack(requeue=True)
            return
        if applied is False:
            await message.reject(requeue=False)
            return
        await message.ack()

    async def _apply(
        self, machine_id: uuid.UUID, event: RunStarted | RunOutput | RunFinished
    ) -> bool | None:
        async with self.session_factory() as session:
            run = await session.get(Run, event.run_id, with_for_update=True)
            if run is None or run.machine_id != machine_id:
                log.warning(
                    "run event from a machine that does not hold the run",
                    extra={"run_id": str(event.run_id)},
                )
                return False
            if event.attempt != run.attempt:
                return None  # an attempt already given up on
            if isinstance(event, RunOutput):
                exists = await session.scalar(
                    sa.select(TranscriptChunk.id).where(
                        TranscriptChunk.run_id == run.id,
                        TranscriptChunk.attempt == event.attempt,
                        TranscriptChunk.seq == event.seq,
                    )
                )
                if exists is not None:
                    return None
                chunk = TranscriptChunk(
                    run_id=run.id,
                    attempt=event.attempt,
                    seq=event.seq,
                    events=event.events,
                    created_at=utcnow(),
                )
                session.add(chunk)
                emit(
                    session,
                    run_topic(run.id),
                    {
                        "kind": "output",
                        "attempt": chunk.attempt,
                        "seq": chunk.seq,
                        "events": chunk.events,
                        "created_at": chunk.created_at.isoformat(),
                    },
                )
            elif isinstance(event, RunStarted):
                await run_domain.started(session, run)
            else:
                await run_domain.finished(
                    session,
                    run,
                    event.outcome,
                    failure_code=event.failure_code,
                    error=event.error,
                    session_id=event.session_id,
                    usage=event.usage,
                    cost_usd=event.cost_usd,
                    diff_stat=event.diff_stat,
                )
            await session.commit()
        return None
