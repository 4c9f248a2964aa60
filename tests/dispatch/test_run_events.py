"""A burst of one run's events (a replayed spool, a short run) is applied in order and exactly
once, and a live transcript subscriber sees each chunk once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa

from taskmachine import models as m
from taskmachine.dispatcher import run_events
from taskmachine.dispatcher.run_events import RunEvents
from taskmachine.domain.events import emit, run_topic
from taskmachine.wire import topology
from taskmachine.wire.runs import RunFinished, RunOutput, RunStarted
from tests.api.gqlclient import Subscription, ws_session
from tests.api.test_live_hub import drain
from tests.conftest import RunningServer
from tests.dispatch.support import claimed_run, runs_of
from tests.machines.support import eventually

TRANSCRIPT = "subscription($r: ID!) { runTranscript(runId: $r) { attempt seq events } }"
CHUNKS = 40


async def test_a_burst_of_run_events_is_applied_in_order_and_once(
    machine_server: RunningServer,
) -> None:
    fleet, job = await claimed_run(machine_server)
    run_id, machine_id = uuid.UUID(job["run_id"]), fleet.creds["machineId"]

    def base(seq: int) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "attempt": job["attempt"],
            "seq": seq,
            "sent_at": datetime.now(UTC),
        }

    events: list[RunStarted | RunOutput | RunFinished] = [RunStarted(**base(0))]
    events += [
        RunOutput(**base(seq), events=[{"kind": "text", "text": f"line {seq}"}])
        for seq in range(1, CHUNKS + 1)
    ]
    # A spool replayed after a reconnect re-sends what the server may have had already.
    events.insert(20, events[5])
    events.append(RunFinished(**base(CHUNKS + 1), outcome="succeeded"))

    async with ws_session(machine_server.ws_url, fleet.who.token) as session:
        sub = Subscription(session, TRANSCRIPT, {"r": job["run_id"]})
        # No confirms: the events arrive back to back and queue behind one another.
        channel = await fleet.daemon.connection.channel(publisher_confirms=False)
        exchange = await topology.open_events_exchange(channel)
        for event in events:
            await exchange.publish(
                aio_pika.Message(
                    event.to_body(),
                    user_id=topology.machine_username(machine_id),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=topology.run_event_routing_key(machine_id, run_id.hex, event.kind),
            )
        # Whether a chunk lands before the subscription listens or after, it comes once.
        seen = [(await sub.next())["runTranscript"] for _ in range(CHUNKS)]
        assert [chunk["seq"] for chunk in seen] == list(range(1, CHUNKS + 1))
        assert seen[4]["events"] == [{"kind": "text", "text": "line 5"}]
        await sub.close()

    async def succeeded() -> Any:
        runs = await runs_of(machine_server, fleet, job["subject_id"])
        return runs[0] if runs[0]["status"] == "SUCCEEDED" else None

    run = await eventually(succeeded)
    assert [h["toStatus"] for h in run["history"]][-2:] == ["RUNNING", "SUCCEEDED"]
    data = await machine_server.ok(
        "query($r: ID!) { transcript(runId: $r) { totalCount } }",
        {"r": job["run_id"]},
        fleet.who.token,
    )
    assert data["transcript"]["totalCount"] == CHUNKS
    await fleet.daemon.__aexit__()


class _Delivered:
    """A run event as the consumer hands it over, recording how it was settled."""

    def __init__(self, event: RunStarted | RunOutput | RunFinished, routing_key: str) -> None:
        self.body = event.to_body()
        self.routing_key = routing_key
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append("reject")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append("nack")


async def test_output_reaches_local_subscribers_before_its_commit_once_the_holder_is_known(
    machine_server: RunningServer,
) -> None:
    fleet, job = await claimed_run(machine_server)
    run_id, machine_id = uuid.UUID(job["run_id"]), fleet.creds["machineId"]
    state = machine_server.state
    applier = RunEvents(state.session_factory, state.hub)
    topic = run_topic(run_id)

    async def deliver(event: RunStarted | RunOutput | RunFinished) -> _Delivered:
        key = topology.run_event_routing_key(machine_id, run_id.hex, event.kind)
        delivered = _Delivered(event, key)
        parsed = topology.parse_event_routing_key(key)
        assert parsed is not None
        await applier.handle(parsed, delivered)  # type: ignore[arg-type]
        return delivered

    def output(seq: int, attempt: int = job["attempt"]) -> RunOutput:
        return RunOutput(
            run_id=run_id,
            attempt=attempt,
            seq=seq,
            sent_at=datetime.now(UTC),
            events=[{"kind": "text", "text": f"line {seq}"}],
        )

    async def hold_the_run() -> AsyncIterator[None]:
        # SQLite: the one connection (and its write lock); PostgreSQL: the run's row.
        async with state.session_factory() as session:
            await session.execute(sa.select(m.Run.id).where(m.Run.id == run_id).with_for_update())
            yield

    async with state.hub.subscribe(topic) as watching:
        base = {"run_id": run_id, "attempt": job["attempt"], "sent_at": datetime.now(UTC)}
        assert (await deliver(RunStarted(**base, seq=0))).settled == ["ack"]
        # The first chunk after the start waits for its commit: nothing was stored by this
        # holder yet.
        assert (await deliver(output(1))).settled == ["ack"]
        assert applier.early == 0
        assert [p.get("seq") for p in await drain(watching)] == [None, 1]  # running, then 1

        # From here on output is shown while its transaction still waits.
        holding = contextlib.asynccontextmanager(hold_the_run)()
        await holding.__aenter__()
        applying = asyncio.create_task(deliver(output(2)))
        shown = await asyncio.wait_for(watching.get(), 5)
        assert shown["seq"] == 2 and not applying.done()
        assert applier.early == 1
        # Someone subscribing now would read the database without chunk 2: the hub gives it.
        async with state.hub.subscribe(topic) as joined:
            assert joined.get_nowait()["seq"] == 2
            await holding.__aexit__(None, None, None)
            assert (await applying).settled == ["ack"]
            # Committed: not handed to this process's subscribers a second time.
            assert await drain(joined, 0.3) == []
        async with state.hub.subscribe(topic) as later:
            assert later.empty()  # settled: a new subscriber reads it from the database

        # A committed move of the run makes the holder unknown again: back to after-commit.
        async with state.session_factory() as session:
            emit(session, topic, {"kind": "status", "status": "running"})
            await session.commit()
        assert (await deliver(output(3))).settled == ["ack"]
        assert applier.early == 1
        assert (await deliver(output(4))).settled == ["ack"]
        assert applier.early == 2
        # Another attempt's output is never shown ahead (and is not stored: it is not held).
        assert (await deliver(output(5, attempt=job["attempt"] + 1))).settled == ["ack"]
        assert applier.early == 2
        seqs = [p["seq"] for p in await drain(watching, 0.3) if p.get("kind") == "output"]
        assert seqs == [3, 4]

    async with state.session_factory() as session:
        stored = (
            await session.scalars(
                sa.select(m.TranscriptChunk)
                .where(m.TranscriptChunk.run_id == run_id)
                .order_by(m.TranscriptChunk.seq)
            )
        ).all()
    assert [row.seq for row in stored] == [1, 2, 3, 4]
    # What was shown ahead is what was stored.
    assert stored[1].created_at == datetime.fromisoformat(shown["created_at"])
    assert stored[1].events == shown["events"]
    await fleet.daemon.__aexit__()


async def test_a_chunk_shown_ahead_whose_transaction_fails_comes_back_with_the_same_seq(
    machine_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, job = await claimed_run(machine_server)
    run_id, machine_id = uuid.UUID(job["run_id"]), fleet.creds["machineId"]
    state = machine_server.state
    applier = RunEvents(state.session_factory, state.hub)

    async def deliver(seq: int) -> _Delivered:
        event = RunOutput(
            run_id=run_id,
            attempt=job["attempt"],
            seq=seq,
            sent_at=datetime.now(UTC),
            events=[{"kind": "text", "text": f"line {seq}"}],
        )
        key = topology.run_event_routing_key(machine_id, run_id.hex, "output")
        delivered = _Delivered(event, key)
        parsed = topology.parse_event_routing_key(key)
        assert parsed is not None
        await applier.handle(parsed, delivered)  # type: ignore[arg-type]
        return delivered

    async with state.hub.subscribe(run_topic(run_id)) as watching:
        assert (await deliver(1)).settled == ["ack"]
        real = run_events._apply_output

        async def failing(*args: Any, **kwargs: Any) -> Any:
            await real(*args, **kwargs)
            raise RuntimeError("the database went away")

        monkeypatch.setattr(run_events, "_apply_output", failing)
        assert (await deliver(2)).settled == ["nack"]  # back to the queue
        monkeypatch.setattr(run_events, "_apply_output", real)
        # Shown once ahead of the failed commit; the pending buffer forgot it.
        async with state.hub.subscribe(run_topic(run_id)) as joined:
            assert joined.empty()
        assert (await deliver(2)).settled == ["ack"]  # the broker's redelivery
        seqs = [p["seq"] for p in await drain(watching, 0.3)]
        # Chunk 2 twice, with one (attempt, seq): runTranscript passes on the first only.
        assert seqs == [1, 2, 2]
    async with state.session_factory() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).where(m.TranscriptChunk.run_id == run_id)
        )
    assert count == 2
    await fleet.daemon.__aexit__()
