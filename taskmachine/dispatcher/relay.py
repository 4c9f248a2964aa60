"""The outbox relay: publish recorded jobs to their machine's queue, after the commit.

Each pending row is published with publisher confirms, `mandatory`, persistent, at its priority,
then marked published. If the broker is down the rows wait and go out when it is back; if the
server dies between the broker's confirm and the mark, the row goes out again and the daemon's
claim (one accepted per attempt) drops the duplicate. The run token is added at publish time,
derived from the run, so no secret sits in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aio_pika
import sqlalchemy as sa
from aio_pika.exceptions import DeliveryError, PublishError

from taskmachine.auth.tokens import TokenHasher
from taskmachine.db import SessionFactory
from taskmachine.dispatcher.link import PUBLISH_TIMEOUT, BrokerLink
from taskmachine.domain import runs as run_domain
from taskmachine.live import LiveHub
from taskmachine.metrics import Metrics
from taskmachine.models import OutboxMessage, Run, RunStatus, utcnow

log = logging.getLogger("taskmachine.relay")

BATCH = 100


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

    async def relay_once(self) -> int:
        async with self.session_factory() as session:
            pending = (
                await session.scalars(
                    sa.select(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(BATCH)
                )
            ).all()
            sent = 0
            for row in pending:
                body = row.body
                run = await session.get(Run, row.run_id) if row.run_id else None
                if run is not None:
                    if run.status is not RunStatus.DISPATCHED or run.attempt != row.headers.get("attempt"):
                        row.published_at = utcnow()  # cancelled or moved on before it left
                        await session.commit()
                        continue
                    job = json.loads(body)
                    job["run_token"] = run_domain.run_token(self.hasher, run)
                    body = json.dumps(job).encode()
                try:
                    await self.link.exchange(row.exchange).publish(
                        aio_pika.Message(
                            body,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            priority=row.priority,
                            message_id=f"{row.run_id}:{row.headers.get('attempt')}",
                        ),
                        routing_key=row.routing_key,
                        mandatory=True,
                        timeout=PUBLISH_TIMEOUT,
                    )
                except (DeliveryError, PublishError):
                    # Unroutable: the machine's queue is gone (machine removed).
                    log.warning("job unroutable; run fails", extra={"run_id": str(row.run_id)})
                    row.published_at = utcnow()
                    if run is not None:
                        await run_domain.fail_unclaimed(session, run)
                    await session.commit()
                    continue
                row.published_at = utcnow()
                await session.commit()
                sent += 1
            self.metrics.inc("taskmachine_jobs_published_total", sent)
            return sent

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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
