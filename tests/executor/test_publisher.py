"""The publisher sends each spooled event once and in order, whether it hands an event straight
over (caught up) or reads it back from the spool (on connect, or after falling far behind), and
loses none when the connection drops with a window of publishes awaiting their confirms."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest

from taskmachine.daemon.executor import publisher as publisher_module
from taskmachine.daemon.executor.publisher import EventPublisher
from taskmachine.daemon.executor.spool import Spool
from taskmachine.wire.runs import RunOutput
from taskmachine.wire.topology import open_events_exchange
from tests.executor.conftest import BROKER_HOST, BROKER_PORT, EventLog, Machine, seqs
from tests.machine.proxy import BrokerProxy


def output(run_id: uuid.UUID, seq: int) -> RunOutput:
    return RunOutput(
        run_id=run_id,
        attempt=1,
        seq=seq,
        sent_at=datetime.now(UTC),
        events=[{"kind": "text", "text": f"step {seq}"}],
    )


async def test_events_go_out_once_and_in_order_from_memory_or_from_the_spool(
    tmp_path: Path, machine: Machine, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few events' worth: the handed-over events overflow while the broker is out of reach.
    monkeypatch.setattr(publisher_module, "FRESH_MAX_BYTES", 2000)
    spool = await Spool.open(tmp_path / "spool.db")
    publisher = EventPublisher(spool, machine.id, machine.username)
    publisher.start()
    run_id = uuid.uuid4()
    connection = await aio_pika.connect(machine.url())
    try:
        for seq in range(30):  # not connected yet: they wait in the spool
            await publisher.emit(output(run_id, seq))
        assert await spool.count() == 30
        channel = await connection.channel(publisher_confirms=True)
        publisher.attach(await open_events_exchange(channel))
        for seq in range(30, 60):  # meanwhile the replay runs
            await publisher.emit(output(run_id, seq))
        await event_log.wait_for(lambda: len(event_log.of(run_id)) >= 60)
        assert await publisher.wait_sent(within=5)
        # Caught up: each event goes out as it is emitted.
        for seq in range(60, 70):
            await publisher.emit(output(run_id, seq))
            await event_log.wait_for(lambda n=seq: len(event_log.of(run_id)) > n)
        assert await publisher.wait_sent(within=5)
    finally:
        await publisher.stop()
        await connection.close()
        await spool.close()

    assert seqs(event_log.of(run_id)) == list(range(70))
    assert event_log.senders(run_id) == {machine.username}


async def test_a_connection_lost_with_publishes_in_flight_loses_none_and_keeps_their_order(
    tmp_path: Path, machine: Machine, event_log: EventLog
) -> None:
    spool = await Spool.open(tmp_path / "spool.db")
    publisher = EventPublisher(spool, machine.id, machine.username)
    publisher.start()
    proxy = BrokerProxy(BROKER_HOST, BROKER_PORT)
    await proxy.up()
    run_id = uuid.uuid4()
    total = 3000
    first = await aio_pika.connect(machine.url(proxy.port))
    second = None
    try:
        publisher.attach(await open_events_exchange(await first.channel(publisher_confirms=True)))
        for seq in range(total):
            await publisher.emit(output(run_id, seq))
        # Cut the connection mid-stream: many publishes are out, their confirms not yet back.
        await event_log.wait_for(lambda: len(event_log.of(run_id)) >= 50)
        await proxy.down()
        arrived = len(event_log.of(run_id))
        assert arrived < total, "the cut came too late to test anything"
        assert await spool.count() > 0
        assert publisher.published < total

        second = await aio_pika.connect(machine.url())
        publisher.attach(await open_events_exchange(await second.channel(publisher_confirms=True)))
        assert await publisher.wait_sent(within=20)
    finally:
        await publisher.stop()
        await proxy.down()
        for connection in (first, second):
            if connection is not None and not connection.is_closed:
                await connection.close()
        await spool.close()

    await event_log.wait_for(lambda: {e.seq for e in event_log.of(run_id)} == set(range(total)))
    events = event_log.of(run_id)
    # What was in flight may come twice; the first of each comes in order, as the server keeps it.
    assert list(dict.fromkeys(seqs(events))) == list(range(total))
    # Only what was in flight when the connection dropped went out again.
    assert len(events) - total <= publisher_module.WINDOW
