"""Live fan-out between server processes: a committed change reaches this process's subscribers
at once and exactly once (not again when its own broadcast comes back), reaches another
process's subscribers through `tama.live`, and a rolled-back change reaches nobody."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import sqlalchemy as sa
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy.orm import Session

from taskmachine.db import SessionFactory, create_engine, create_session_factory
from taskmachine.domain.events import emit
from taskmachine.live import BATCH_TYPE, EARLY_KEY, LIVE_EXCHANGE, LiveHub
from taskmachine.settings import Settings


@contextlib.asynccontextmanager
async def server_process(
    settings: Settings, *, broker: bool = True
) -> AsyncIterator[tuple[LiveHub, SessionFactory]]:
    """What one server process has: its hub (on the broker), bound to its own session class."""
    engine = create_engine(settings)
    hub = LiveHub()
    session_class = type("ProcessSession", (Session,), {})
    hub.bind(session_class)
    await hub.start(settings.amqp_url if broker else None)
    try:
        yield hub, create_session_factory(engine, session_class)
    finally:
        await hub.stop()
        await engine.dispose()


Queue = asyncio.Queue[dict[str, Any]]


@contextlib.asynccontextmanager
async def two_processes(
    settings: Settings, topic: str
) -> AsyncIterator[tuple[LiveHub, SessionFactory, LiveHub, Queue, Queue]]:
    """Two server processes on the broker, each with a subscriber of `topic`: the hub and the
    sessions of the first ("here", where changes are made), the hub of the second, and the two
    subscribers."""
    async with (
        server_process(settings) as (here, here_db),
        server_process(settings) as (there, _),
        here.subscribe(topic) as mine,
        there.subscribe(topic) as theirs,
    ):
        yield here, here_db, there, mine, theirs


async def change(
    factory: SessionFactory,
    topic: str,
    payload: dict[str, Any],
    *,
    keep: bool,
    early: bool = False,
) -> None:
    """A transaction that announces `payload` and commits (`keep`) or rolls back. `early`: the
    event was handed to this process's subscribers already (`deliver_early`), so the transaction
    leaves it for the other processes, as the run-events applier does."""
    async with factory() as session:
        await session.execute(sa.text("SELECT 1"))
        if early:
            session.info[EARLY_KEY] = [(topic, payload)]
        else:
            emit(session, topic, payload)
        if keep:
            await session.commit()
        else:
            await session.rollback()


async def drain(queue: asyncio.Queue[dict[str, Any]], settle: float = 0.5) -> list[dict[str, Any]]:
    """What arrives until nothing more comes for `settle` seconds."""
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(await asyncio.wait_for(queue.get(), settle))
    return got


async def test_a_commit_reaches_local_subscribers_once_and_other_processes_through_the_broker(
    broker_settings: Settings,
) -> None:
    async with (
        two_processes(broker_settings, "run.r1") as (_, here_db, there, mine, theirs),
        there.subscribe("run.other") as elsewhere,
    ):
        await change(here_db, "run.r1", {"seq": 1}, keep=True)
        # Delivered in the commit itself, before any broker round trip.
        assert mine.get_nowait() == {"seq": 1}
        await change(here_db, "run.r1", {"seq": 2}, keep=True)
        await change(here_db, "run.r1", {"seq": 3}, keep=False)
        await change(here_db, "run.r1", {"seq": 4}, keep=True)

        assert [p["seq"] for p in await drain(theirs)] == [1, 2, 4]
        # The broadcast came back to this process too, and was skipped: no duplicates.
        assert [p["seq"] for p in await drain(mine)] == [2, 4]
        assert elsewhere.empty()


async def test_without_a_broker_a_commit_fans_out_inside_the_process(settings: Settings) -> None:
    assert not settings.broker_enabled
    async with (
        server_process(settings, broker=False) as (hub, factory),
        hub.subscribe("run.r1") as queue,
    ):
        await change(factory, "run.r1", {"seq": 1}, keep=False)
        await change(factory, "run.r1", {"seq": 2}, keep=True)
        assert [p["seq"] for p in await drain(queue, 0.2)] == [2]


async def test_an_event_delivered_ahead_of_its_commit_reaches_each_subscriber_once(
    broker_settings: Settings,
) -> None:
    async with two_processes(broker_settings, "run.r1") as (here, here_db, _, mine, theirs):
        kept, dropped = {"seq": 1}, {"seq": 2}
        for payload, keep in ((kept, True), (dropped, False)):
            here.deliver_early("run.r1", payload)
            assert mine.get_nowait() is payload  # at once, before any commit
            # Joining before the transaction ends: the pending event comes first.
            async with here.subscribe("run.r1") as joined:
                assert joined.get_nowait() is payload
            await change(here_db, "run.r1", payload, keep=keep, early=True)
            here.settle_early("run.r1", [payload])
            async with here.subscribe("run.r1") as after:
                assert after.empty()
        # Other processes only hear of what committed; this one is not handed it again.
        assert await drain(theirs) == [{"seq": 1}]
        assert await drain(mine) == []


@contextlib.asynccontextmanager
async def beside_two_processes(
    settings: Settings, topic: str
) -> AsyncIterator[
    tuple[SessionFactory, asyncio.Queue[dict[str, Any]], aio_pika.abc.AbstractChannel]
]:
    """Two server processes on the broker: one that commits (its sessions), a subscriber of
    `topic` in the other, and a channel of the test's own on the same broker."""
    connection = await aio_pika.connect(settings.amqp_url or "")
    async with (
        connection,
        server_process(settings) as (_, here_db),
        server_process(settings) as (there, _),
        there.subscribe(topic) as theirs,
    ):
        yield here_db, theirs, await connection.channel()


async def test_a_burst_of_commits_reaches_another_process_whole_in_order_in_fewer_messages(
    broker_settings: Settings,
) -> None:
    seen: list[int] = []
    async with beside_two_processes(broker_settings, "run.burst") as (here_db, theirs, channel):
        # A listener of its own on the exchange counts the messages the burst took.
        exchange = await channel.declare_exchange(
            LIVE_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        counter = await channel.declare_queue(exclusive=True)
        await counter.bind(exchange, routing_key="#")
        await counter.consume(functools.partial(_count, seen), no_ack=True)
        async with here_db() as session:
            await session.execute(sa.text("SELECT 1"))
            for seq in range(300):
                emit(session, "run.burst", {"seq": seq})
            await session.commit()
        assert [p["seq"] for p in await drain(theirs)] == list(range(300))
        assert sum(seen) == 300
        assert len(seen) < 300


async def _count(seen: list[int], message: AbstractIncomingMessage) -> None:
    seen.append(len(json.loads(message.body)))


async def test_a_malformed_live_message_is_dropped_and_what_follows_still_arrives(
    broker_settings: Settings,
) -> None:
    async with beside_two_processes(broker_settings, "run.r1") as (here_db, theirs, channel):
        exchange = await channel.get_exchange(LIVE_EXCHANGE)
        for body, kind in (
            (b"not json", BATCH_TYPE),
            (b'{"seq": 1}', BATCH_TYPE),  # not a list of [topic, payload]
            (b'[["run.r1", 5]]', BATCH_TYPE),  # a payload that is not an object
            (b'[["run.r1", {"seq": 1}]]', None),  # not marked as a batch
        ):
            await exchange.publish(aio_pika.Message(body, type=kind), routing_key="run.r1")
        await change(here_db, "run.r1", {"seq": 2}, keep=True)
        assert await drain(theirs) == [{"seq": 2}]


async def test_a_watcher_hears_every_commit_until_it_stops_watching(settings: Settings) -> None:
    heard: list[tuple[str, dict[str, Any]]] = []

    def watcher(topic: str, payload: dict[str, Any]) -> None:
        heard.append((topic, payload))

    async with server_process(settings, broker=False) as (hub, factory):
        hub.watch(watcher)
        await change(factory, "run.r1", {"seq": 1}, keep=True)
        await change(factory, "run.r1", {"seq": 2}, keep=False)
        hub.unwatch(watcher)
        await change(factory, "run.r1", {"seq": 3}, keep=True)
    assert heard == [("run.r1", {"seq": 1})]
