"""The publisher sends each spooled event once and in order, whether it hands an event straight
over (caught up) or reads it back from the spool (on connect, or after falling far behind)."""

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
from tests.executor.conftest import EventLog, Machine, seqs


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
