"""Apply run events from daemons, each exactly once.

Events are numbered per attempt. Transcript output is stored under (run, attempt, seq), a unique
key: the insert does nothing when the chunk is there already, so a re-delivered chunk is dropped
(and not shown twice). `started` and `finished` are conditional moves, so a repeat changes
nothing. Events of an attempt the server has moved past are acknowledged and ignored. An event
for a run its sender does not hold is dead-lettered.

One run's events are applied in the order they were delivered, by one worker per run: aio-pika
hands every delivery to a task of its own, and a burst (a replayed spool, a server back from a
restart, a short run's start, output and finish) would otherwise apply `finished` beside or
before `started`. What arrives for a run while its worker is in a transaction waits, and the
worker applies it next, up to `MAX_BURST` events in one transaction; deliveries are acknowledged
only after that commit (a failed burst is retried one event at a time; an event that still fails
returns to the queue). Output, the usual burst, costs one statement a chunk: the insert itself
checks that the sender holds the run at that attempt. The run's row is read for update when the
burst moves the run, and for share by that insert (PostgreSQL), so appliers in two server
processes cannot both move it from the same state, nor store output for a holder the other has
just replaced.

Output reaches this process's subscribers before its commit when that is safe: the burst is
output only, and its sender and attempt are the holder this process last saw store output for
the run (remembered after a commit, forgotten on any committed move of the run, here or in
another process). Such chunks will commit, or the transaction fails and the broker brings them
back with the same (attempt, seq), which subscribers drop as repeats. Until the transaction is
over they wait in the hub's pending buffer, where a subscriber that joins meanwhile finds them
(see `taskmachine.live`). Other processes get them through `tama.live` after the commit, as ever.
What remains is a move committed elsewhere, not yet seen here, while a chunk is on its way: the
chunk was shown and is then rejected (the old holder's output just before it lost the run).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.db import SessionFactory
from taskmachine.domain import runs as run_domain
from taskmachine.domain.events import emit, run_topic
from taskmachine.live import EARLY_KEY, LiveHub
from taskmachine.models import Run, Task, TranscriptChunk, utcnow
from taskmachine.models.base import new_id
from taskmachine.wire.errors import WireError
from taskmachine.wire.runs import RunFinished, RunOutput, RunStarted, parse_run_event
from taskmachine.wire.topology import EventRoutingKey

log = logging.getLogger("taskmachine.runs")

# Events of one run applied in one transaction at most.
MAX_BURST = 128
# Runs whose holder is remembered, at most (the memory is only a shortcut).
MAX_HOLDERS = 10_000

Verdict = Literal["ack", "reject"]
_CHUNKS: sa.Table = TranscriptChunk.__table__  # type: ignore[assignment]


@dataclass(slots=True)
class _Delivery:
    key: EventRoutingKey
    message: AbstractIncomingMessage


@dataclass(slots=True)
class _Holder:
    """What the checks need of the run: who holds it, and which attempt is current."""

    machine_id: uuid.UUID | None
    attempt: int


class RunEvents:
    def __init__(self, session_factory: SessionFactory, hub: LiveHub) -> None:
        self.session_factory = session_factory
        self.hub = hub
        # Per run with a worker: the deliveries waiting for it, in delivery order.
        self._backlog: dict[str, list[_Delivery]] = {}
        # By run topic: (machine, attempt) that last stored output here, as of that commit.
        self._holders: dict[str, tuple[uuid.UUID, int]] = {}
        # By run topic, for an output transaction in progress: whether the run moved meanwhile.
        self._moved: dict[str, bool] = {}
        hub.watch(self._on_committed)
        self.early = 0  # chunks delivered ahead of their commit (for tests and the bench)

    def close(self) -> None:
        """Stop listening to the hub (the dispatcher stopped; the hub may outlive it)."""
        self.hub.unwatch(self._on_committed)

    async def handle(self, key: EventRoutingKey, message: AbstractIncomingMessage) -> None:
        run_key = _run_key(key.run_id or "")
        backlog = self._backlog.get(run_key)
        if backlog is not None:
            backlog.append(_Delivery(key, message))  # the run's worker takes it next
            return
        # No await before this line: the first delivery of a run becomes its worker.
        self._backlog[run_key] = backlog = [_Delivery(key, message)]
        try:
            while backlog:
                burst = backlog[:MAX_BURST]
                del backlog[:MAX_BURST]
                try:
                    await self._apply_burst(burst)
                except Exception:  # e.g. an ack on a closed channel: the broker re-delivers
                    log.exception("run events left unacknowledged")
        finally:
            del self._backlog[run_key]

    async def _apply_burst(self, burst: list[_Delivery]) -> None:
        parsed: list[tuple[_Delivery, RunStarted | RunOutput | RunFinished]] = []
        for delivery in burst:
            event = self._parse(delivery)
            if event is None:
                await delivery.message.reject(requeue=False)
            else:
                parsed.append((delivery, event))
        if parsed:
            await self._settle(parsed)

    async def _settle(
        self, parsed: list[tuple[_Delivery, RunStarted | RunOutput | RunFinished]]
    ) -> None:
        """Apply and acknowledge; if the transaction fails, try the events one at a time, so a
        single bad one does not hold back the rest."""
        try:
            verdicts = await self._apply(
                [(uuid.UUID(delivery.key.machine_id), event) for delivery, event in parsed]
            )
        except Exception:
            if len(parsed) > 1:
                log.warning("a burst of run events failed; applying them one by one")
                for item in parsed:
                    await self._settle([item])
                return
            log.exception("run event not applied; returned to the queue")
            await parsed[0][0].message.nack(requeue=True)
            return
        for (delivery, _), verdict in zip(parsed, verdicts, strict=True):
            if verdict == "ack":
                await delivery.message.ack()
            else:
                await delivery.message.reject(requeue=False)

    @staticmethod
    def _parse(delivery: _Delivery) -> RunStarted | RunOutput | RunFinished | None:
        message, key = delivery.message, delivery.key
        try:
            event = parse_run_event(message.body)
        except WireError as exc:
            log.warning(
                "run event dead-lettered: %s", exc, extra={"routing_key": message.routing_key}
            )
            return None
        if key.run_id != event.run_id.hex and key.run_id != str(event.run_id):
            log.warning("run event names another run", extra={"routing_key": message.routing_key})
            return None
        return event

    async def _apply(
        self, events: list[tuple[uuid.UUID, RunStarted | RunOutput | RunFinished]]
    ) -> list[Verdict]:
        """Apply one run's events (each with its sender) in one transaction; a verdict for
        each, in order."""
        outputs = [(sender, e) for sender, e in events if isinstance(e, RunOutput)]
        if len(outputs) != len(events):
            async with self.session_factory() as session:
                verdicts = await _apply_moves(session, events)
                await session.commit()
            return verdicts
        topic = run_topic(events[0][1].run_id)
        chunks = [_Chunk(sender, event) for sender, event in outputs]
        holder = self._holders.get(topic)
        early = holder is not None and all((c.sender, c.event.attempt) == holder for c in chunks)
        if early:
            for chunk in chunks:
                self.hub.deliver_early(topic, chunk.payload)
            self.early += len(chunks)
            await asyncio.sleep(0)  # subscribers first: the transaction is not on their path
        self._moved[topic] = False
        try:
            async with self.session_factory() as session:
                verdicts, stored = await _apply_output(session, chunks, early=early)
                await session.commit()
                # Remember the holder unless the run moved since this transaction began (a move
                # committed later forgets it when it commits).
                if stored is not None and not self._moved[topic]:
                    if len(self._holders) >= MAX_HOLDERS:
                        self._holders.clear()
                    self._holders[topic] = (stored.sender, stored.event.attempt)
        finally:
            del self._moved[topic]
            if early:
                self.hub.settle_early(topic, [chunk.payload for chunk in chunks])
        return verdicts

    def _on_committed(self, topic: str, payload: dict[str, Any]) -> None:
        """A committed move of a run (any event on its topic but output) may change its holder."""
        if payload.get("kind") == "output" or not topic.startswith("run."):
            return
        self._holders.pop(topic, None)
        if topic in self._moved:
            self._moved[topic] = True


class _Chunk:
    """A transcript chunk on its way in, with what subscribers are (or will be) handed."""

    __slots__ = ("created_at", "event", "payload", "sender")

    def __init__(self, sender: uuid.UUID, event: RunOutput) -> None:
        self.sender = sender
        self.event = event
        self.created_at: datetime = utcnow()
        self.payload: dict[str, Any] = {
            "kind": "output",
            "attempt": event.attempt,
            "seq": event.seq,
            "events": event.events,
            "created_at": self.created_at.isoformat(),
        }


async def _apply_output(
    session: AsyncSession, chunks: list[_Chunk], *, early: bool
) -> tuple[list[Verdict], _Chunk | None]:
    """Output only, the usual burst: one statement a chunk, which checks the holder itself.
    Also returns the last chunk stored, if any. `early`: subscribers here have the chunks
    already, so only other processes are told at commit."""
    verdicts: list[Verdict] = []
    holder: _Holder | None = None
    stored: _Chunk | None = None
    for chunk in chunks:
        if await _store_output(session, chunk, early=early):
            verdicts.append("ack")
            stored = chunk
            continue
        # Not stored: a re-delivery, an attempt given up on, or a sender without the run.
        event = chunk.event
        if holder is None:
            row = (
                await session.execute(
                    sa.select(Run.machine_id, Run.attempt).where(Run.id == event.run_id)
                )
            ).one_or_none()
            holder = _Holder(row.machine_id, row.attempt) if row is not None else _Holder(None, 0)
        verdicts.append(_holder_verdict(holder, chunk.sender, event.run_id))
    return verdicts, stored


async def _apply_moves(
    session: AsyncSession, events: list[tuple[uuid.UUID, RunStarted | RunOutput | RunFinished]]
) -> list[Verdict]:
    """A burst that starts or finishes the run: its row is read for update, and each event is
    checked against it as the events before it left it."""
    # The run's task comes in the same statement: the moves read it (the timeline) and, once it
    # is in the session, reading it sends nothing and flushes nothing.
    found = (
        await session.execute(
            sa.select(Run, Task)
            .outerjoin(Task, Task.id == Run.task_id)
            .where(Run.id == events[0][1].run_id)
            .with_for_update(of=Run)
        )
    ).first()
    run = found[0] if found is not None else None
    verdicts: list[Verdict] = []
    for machine_id, event in events:
        holder = _Holder(run.machine_id, run.attempt) if run is not None else _Holder(None, 0)
        verdict = _holder_verdict(holder, machine_id, event.run_id)
        verdicts.append(verdict)
        if verdict == "reject" or event.attempt != holder.attempt:
            continue  # not the holder, or an attempt already given up on
        assert run is not None
        if isinstance(event, RunOutput):
            await _store_output(session, _Chunk(machine_id, event), early=False)
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
    return verdicts


def _run_key(run_id: str) -> str:
    """One key per run, however the routing key spells its id (hex or with dashes)."""
    try:
        return uuid.UUID(run_id).hex
    except ValueError:
        return run_id  # dead-lettered when parsed


def _holder_verdict(holder: _Holder, machine_id: uuid.UUID, run_id: uuid.UUID) -> Verdict:
    if holder.machine_id is None or holder.machine_id != machine_id:
        log.warning(
            "run event from a machine that does not hold the run", extra={"run_id": str(run_id)}
        )
        return "reject"
    return "ack"


class _ChunkInsert:
    """The chunk insert, built once per dialect: `INSERT … SELECT … ON CONFLICT DO NOTHING
    RETURNING id`, whose SELECT is the holder check (a row only if the sender holds the run at
    this attempt; for share on PostgreSQL, so a concurrent move waits for us)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        columns = _CHUNKS.c
        holder = (
            sa.select(
                sa.bindparam("id", type_=columns.id.type),
                Run.id,
                sa.bindparam("attempt", type_=columns.attempt.type),
                sa.bindparam("seq", type_=columns.seq.type),
                sa.bindparam("events", type_=columns.events.type),
                sa.bindparam("created_at", type_=columns.created_at.type),
            )
            .where(
                Run.id == sa.bindparam("run_id", type_=columns.run_id.type),
                Run.machine_id == sa.bindparam("machine_id", type_=columns.run_id.type),
                Run.attempt == sa.bindparam("attempt"),
            )
            .with_for_update(read=True)
        )
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        self.statement = (
            insert(_CHUNKS)
            .from_select(["id", "run_id", "attempt", "seq", "events", "created_at"], holder)
            .on_conflict_do_nothing(index_elements=["run_id", "attempt", "seq"])
            .returning(columns.id)
        )

    def params(self, chunk: _Chunk) -> dict[str, Any]:
        event = chunk.event
        return {
            "id": new_id(),
            "run_id": event.run_id,
            "attempt": event.attempt,
            "seq": event.seq,
            "events": event.events,
            "created_at": chunk.created_at,
            "machine_id": chunk.sender,
        }


_INSERTS: dict[str, _ChunkInsert] = {}


async def _store_output(session: AsyncSession, chunk: _Chunk, *, early: bool) -> bool:
    """Insert the chunk if the sender holds the run at this attempt and (run, attempt, seq) is
    not stored yet, and announce it; False if nothing was stored."""
    dialect = session.get_bind().dialect
    insert = _INSERTS.get(dialect.name)
    if insert is None:
        insert = _INSERTS[dialect.name] = _ChunkInsert(dialect)
    if await session.scalar(insert.statement, insert.params(chunk)) is None:
        return False
    topic = run_topic(chunk.event.run_id)
    if early:
        session.info.setdefault(EARLY_KEY, []).append((topic, chunk.payload))
    else:
        emit(session, topic, chunk.payload)
    return True
