"""The outbox relay: publish recorded jobs to their machine's queue, after the commit.

Each pending row is published with publisher confirms, `mandatory`, persistent, at its priority,
then marked published. If the broker is down the rows wait and go out when it is back; if the
server dies between the broker's confirm and the mark, the row goes out again and the daemon's
claim (one accepted per attempt) drops the duplicate. The run token is added at publish time,
derived from the run, so no secret sits in the outbox.

Marks are written a little later (MARK_DELAY), many rows in one statement: the mark is
bookkeeping (this process remembers what it sent meanwhile), and written at once it took the
database just when the job's claim arrived (on SQLite, one connection), and cost a transaction per
publish under load. Dying before the mark only means sending again, as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass

import aio_pika
import sqlalchemy as sa
from aio_pika.exceptions import DeliveryError, PublishError
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.tokens import TokenHasher
from taskmachine.background import stop_task
from taskmachine.db import SessionFactory
from taskmachine.dispatcher.link import PUBLISH_TIMEOUT, BrokerLink
from taskmachine.domain import runs as run_domain
from taskmachine.live import LiveHub
from taskmachine.metrics import Metrics
from taskmachine.models import OutboxMessage, Run, RunStatus, utcnow

log = logging.getLogger("taskmachine.relay")

BATCH = 100
# How long sent rows wait to be marked, gathering into one statement (see above).
MARK_DELAY = 1.0
MARK_CHUNK = 500  # ids per statement, well under SQLite's limit on bound parameters


@dataclass
class _Pending:
    row_id: uuid.UUID
    exchange: str
    routing_key: str
    body: bytes
    priority: int
    run_id: uuid.UUID | None
    message_id: str


class Relay:
    def __init__(
        self,
        session_factory: SessionFactory,
        link: BrokerLink,
        hasher: TokenHasher,
        hub: LiveHub,
        metrics: Metrics,
    ) -> None:
        self.session_factory = session_factory
        self.link = link
        self.hasher = hasher
        self.hub = hub
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        # One sender at a time: the loop and the scheduler's direct send never publish a row
        # twice in this process (a row is remembered as sent before the lock is let go).
        self._lock = asyncio.Lock()
        self._sent: set[uuid.UUID] = set()
        # Sent, not yet marked in the database: the loop must not send these again.
        self._unmarked: set[uuid.UUID] = set()
        self._marker: asyncio.Task[None] | None = None

    async def relay_once(self) -> int:
        """Read what is pending, publish it with no transaction open (a confirm takes a broker
        round trip; on SQLite the one connection must not wait on it), then mark it sent."""
        async with self._lock:
            ready, dropped = await self._pending()
            return await self._send(ready, dropped)

    async def send_dispatched(self, dispatched: list[tuple[OutboxMessage, Run]]) -> int:
        """Publish jobs the scheduler has just committed, from memory: no read back, and no
        wait for the relay's turn. Rows it cannot send stay pending for the loop."""
        async with self._lock:
            ready = [
                self._item(row, self._token(row.body, run))
                for row, run in dispatched
                if row.id not in self._sent  # the loop's timer may have been quicker
            ]
            return await self._send(ready, [])

    def _token(self, body: bytes, run: Run) -> bytes:
        job = json.loads(body)
        job["run_token"] = run_domain.run_token(self.hasher, run)
        return json.dumps(job).encode()

    @staticmethod
    def _item(row: OutboxMessage, body: bytes) -> _Pending:
        return _Pending(
            row.id,
            row.exchange,
            row.routing_key,
            body,
            row.priority,
            row.run_id,
            f"{row.run_id}:{row.headers.get('attempt')}",
        )

    async def _publish(self, item: _Pending) -> None:
        await self.link.exchange(item.exchange).publish(
            aio_pika.Message(
                item.body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                priority=item.priority,
                message_id=item.message_id,
            ),
            routing_key=item.routing_key,
            mandatory=True,
            timeout=PUBLISH_TIMEOUT,
        )

    async def _send(self, ready: list[_Pending], dropped: list[_Pending]) -> int:
        # All at once: frames go out in order (FIFO within a priority holds) and the confirms,
        # which wait for the broker's disk for persistent messages, are awaited together.
        outcomes = await asyncio.gather(
            *(self._publish(item) for item in ready), return_exceptions=True
        )
        unroutable: list[_Pending] = []
        sent: list[_Pending] = []
        failure: BaseException | None = None
        for item, outcome in zip(ready, outcomes, strict=True):
            if outcome is None:
                sent.append(item)
            elif isinstance(outcome, DeliveryError | PublishError):
                # Unroutable: the machine's queue is gone (machine removed).
                log.warning("job unroutable; run fails", extra={"run_id": str(item.run_id)})
                unroutable.append(item)
            else:
                failure = failure or outcome  # broker away: the row stays pending
        if len(self._sent) > 10_000:
            self._sent.clear()
        self._sent.update(item.row_id for item in sent + dropped + unroutable)
        if unroutable:
            await self._mark(unroutable, unroutable)  # rare: the runs fail now
        if sent or dropped:
            self._unmarked.update(item.row_id for item in sent + dropped)
            if self._marker is None or self._marker.done():
                self._marker = asyncio.create_task(self._mark_later(), name="relay-mark")
        self.metrics.inc("taskmachine_jobs_published_total", len(sent))
        if failure is not None:
            raise failure
        return len(sent) + len(dropped) + len(unroutable)

    async def _pending(self) -> tuple[list[_Pending], list[_Pending]]:
        async with self.session_factory() as session:
            rows = (
                await session.scalars(
                    sa.select(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(BATCH)
                )
            ).all()
            runs = {
                r.id: r
                for r in (
                    await session.scalars(
                        sa.select(Run).where(Run.id.in_({row.run_id for row in rows}))
                    )
                ).all()
            }
        ready: list[_Pending] = []
        dropped: list[_Pending] = []
        for row in rows:
            if row.id in self._unmarked:
                continue  # sent; its mark is on the way
            run = runs.get(row.run_id) if row.run_id else None
            if run is None:
                ready.append(self._item(row, row.body))
            elif run.status is not RunStatus.DISPATCHED or run.attempt != row.headers.get(
                "attempt"
            ):
                dropped.append(self._item(row, row.body))  # cancelled or moved on before it left
            else:
                ready.append(self._item(row, self._token(row.body, run)))
        return ready, dropped

    async def _mark_later(self) -> None:
        await asyncio.sleep(MARK_DELAY)
        while self._unmarked:
            try:
                await self._write_marks(list(self._unmarked)[:MARK_CHUNK])
            except Exception:  # the database is away: try again; the rows are remembered
                log.warning("outbox rows not marked yet", exc_info=True)
                await asyncio.sleep(1.0)

    async def flush_marks(self) -> None:
        """Write the pending marks now (on stop, and for tests)."""
        if self._marker is not None and not self._marker.done():
            await stop_task(self._marker)
        self._marker = None
        if self._unmarked:
            await self._write_marks(list(self._unmarked))

    async def _write_marks(self, ids: list[uuid.UUID]) -> None:
        """Mark these sent rows published, and forget them once that committed."""
        async with self.session_factory() as session:
            await self._set_published(session, ids)
            await session.commit()
        self._unmarked.difference_update(ids)

    @staticmethod
    async def _set_published(session: AsyncSession, ids: list[uuid.UUID]) -> None:
        await session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(published_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def _mark(self, done: list[_Pending], unroutable: list[_Pending]) -> None:
        async with self.session_factory() as session:
            await self._set_published(session, [item.row_id for item in done])
            for item in unroutable:
                run = await session.get(Run, item.run_id) if item.run_id else None
                if run is not None and run.status is RunStatus.DISPATCHED:
                    await run_domain.fail_unclaimed(session, run)
            await session.commit()

    async def _loop(self) -> None:
        wake = self.hub.kick_event("relay")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=1.0)
            wake.clear()
            try:
                while await self.relay_once() >= BATCH:
                    pass
            except Exception:  # broker away: the rows wait in the outbox
                log.warning("relay paused: %s", "broker unavailable", exc_info=True)
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="relay")

    async def stop(self) -> None:
        await stop_task(self._task)
        try:
            await self.flush_marks()
        except Exception:  # unmarked rows go out again after a restart; claims drop duplicates
            log.warning("outbox marks not written on stop", exc_info=True)
