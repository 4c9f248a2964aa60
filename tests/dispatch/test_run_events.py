"""A burst of one run's events (a replayed spool, a short run) is applied in order and exactly
once, and a live transcript subscriber sees each chunk once, in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika

from taskmachine.wire import topology
from taskmachine.wire.runs import RunFinished, RunOutput, RunStarted
from tests.api.gqlclient import Subscription, ws_session
from tests.conftest import RunningServer
from tests.dispatch.support import JobInbox, assign, claim, new_task, ready_fleet, runs_of
from tests.machines.support import eventually

TRANSCRIPT = "subscription($r: ID!) { runTranscript(runId: $r) { attempt seq events } }"
CHUNKS = 40


async def test_a_burst_of_run_events_is_applied_in_order_and_once(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server)
    inbox = await JobInbox(fleet).open()
    task_id = await new_task(machine_server, fleet)
    await assign(machine_server, fleet, task_id)
    job, message = await inbox.next()
    assert await claim(machine_server, fleet, job)
    await message.ack()
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
        runs = await runs_of(machine_server, fleet, task_id)
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
