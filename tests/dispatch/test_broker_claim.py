"""Claims over the broker: a RunClaim on tama.events, the answer on the machine's control queue."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from taskmachine.daemon.executor import BrokerClaimer, ClaimUnavailable
from taskmachine.wire import topology
from taskmachine.wire.control import parse_control
from tests.api.gqlclient import Subscription, ws_session
from tests.conftest import RunningServer
from tests.dispatch.support import Fleet, JobInbox, assign, new_task, ready_fleet, runs_of
from tests.machines.support import FakeDaemon, connect_machine, eventually


async def _claimer(fleet: Fleet, daemon: FakeDaemon) -> BrokerClaimer:
    """A BrokerClaimer publishing as `daemon`'s machine, fed by its control queue."""
    claimer = BrokerClaimer(daemon.machine_id, timeout=10.0)
    claimer.attach(daemon.events)
    channel = await daemon.connection.channel()
    queues = await topology.open_machine_queues(channel, daemon.machine_id)

    async def on_control(message: AbstractIncomingMessage) -> None:
        await message.ack()
        claimer.answered(parse_control(message.body))  # type: ignore[arg-type]

    await queues.control.consume(on_control)
    return claimer


async def _dispatched(server: RunningServer, fleet: Fleet) -> tuple[dict[str, Any], str]:
    inbox = await JobInbox(fleet).open()
    task_id = await new_task(server, fleet)
    await assign(server, fleet, task_id)
    job, message = await inbox.next()
    await message.ack()
    return job, task_id


async def test_one_claim_per_attempt_wins_and_its_holder_may_ask_again(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server)
    claimer = await _claimer(fleet, fleet.daemon)
    job, task_id = await _dispatched(machine_server, fleet)
    run_id = uuid.UUID(job["run_id"])

    assert await claimer.claim(run_id, 2) is False, "an attempt that is not the run's"
    assert await claimer.claim(uuid.uuid4(), 1) is False, "a run that does not exist"

    # Another machine of the same workspace cannot take it.
    other_creds = await connect_machine(machine_server, fleet.who)
    async with FakeDaemon(other_creds) as other:
        assert await (await _claimer(fleet, other)).claim(run_id, 1) is False

    assert await claimer.claim(run_id, 1) is True
    # The answer was lost, say: the holder asks again and is told yes, and nothing changes.
    assert await claimer.claim(run_id, 1) is True
    (run,) = await runs_of(machine_server, fleet, task_id)
    assert run["status"] == "CLAIMED"
    claimed = [h for h in run["history"] if h["toStatus"] == "CLAIMED"]
    assert len(claimed) == 1


RUN_CHANGED = "subscription($r: ID!) { runChanged(runId: $r) { status attempt } }"


async def test_an_accepted_claim_reaches_whoever_watches_the_run(
    machine_server: RunningServer,
) -> None:
    """On PostgreSQL the claim is one statement with no transaction around it: its news still
    goes out once it is written, as every committed change's does."""
    fleet = await ready_fleet(machine_server)
    claimer = await _claimer(fleet, fleet.daemon)
    job, _ = await _dispatched(machine_server, fleet)
    hub = machine_server.state.hub
    async with ws_session(machine_server.ws_url, fleet.who.token) as session:
        watchers = hub.subscriber_count
        sub = Subscription(session, RUN_CHANGED, {"r": job["run_id"]})

        async def listening() -> bool:
            return bool(hub.subscriber_count > watchers)

        await eventually(listening)
        assert await claimer.claim(uuid.UUID(job["run_id"]), 1) is True
        assert (await sub.next())["runChanged"] == {"status": "CLAIMED", "attempt": 1}
        await sub.close()


async def test_a_malformed_claim_is_dead_lettered_and_claims_go_on(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server)
    claimer = await _claimer(fleet, fleet.daemon)
    job, _ = await _dispatched(machine_server, fleet)
    broker = machine_server.state.services["broker"]
    dead = await broker.channel.declare_queue(
        topology.DEAD_QUEUE, durable=True, arguments=topology.queue_arguments("dead")
    )
    await dead.purge()
    machine_id = fleet.creds["machineId"]
    await fleet.daemon.events.publish(
        aio_pika.Message(b'{"kind": "claim"}', user_id=topology.machine_username(machine_id)),
        routing_key=topology.claim_routing_key(machine_id, job["run_id"]),
        timeout=5,
    )

    async def dead_lettered() -> Any:
        return await dead.get(fail=False)

    message = await eventually(dead_lettered, within=10)
    assert message.body == b'{"kind": "claim"}'
    assert await claimer.claim(uuid.UUID(job["run_id"]), 1) is True


async def test_no_answer_is_claim_unavailable(machine_server: RunningServer) -> None:
    fleet = await ready_fleet(machine_server)
    # Answers go to the control queue, which nobody reads here.
    claimer = BrokerClaimer(fleet.daemon.machine_id, timeout=0.5)
    with pytest.raises(ClaimUnavailable, match="not connected"):
        await claimer.claim(uuid.uuid4(), 1)
    claimer.attach(fleet.daemon.events)
    with pytest.raises(ClaimUnavailable, match="no answer"):
        await claimer.claim(uuid.uuid4(), 1)


async def test_claims_that_arrive_together_are_decided_together_one_per_attempt(
    machine_server: RunningServer,
) -> None:
    """A burst of claims is decided in one transaction; each still gets its own answer: the
    first for an attempt wins, its holder asking again is told yes, the rest are refused."""
    fleet = await ready_fleet(machine_server, concurrency=2)
    claimer = await _claimer(fleet, fleet.daemon)
    first, _ = await _dispatched(machine_server, fleet)
    second, _ = await _dispatched(machine_server, fleet)
    a, b = uuid.UUID(first["run_id"]), uuid.UUID(second["run_id"])
    other_creds = await connect_machine(machine_server, fleet.who)
    async with FakeDaemon(other_creds) as other:
        rival = await _claimer(fleet, other)
        outcomes = await asyncio.gather(
            claimer.claim(a, 1),
            claimer.claim(b, 1),
            claimer.claim(a, 1),
            rival.claim(b, 1),
            claimer.claim(b, 2),
        )
    assert outcomes == [True, True, True, False, False]
    for run_id in (a, b):
        runs = await machine_server.ok(
            "query($r: ID!) { run(id: $r) { status history { toStatus } } }",
            {"r": str(run_id)},
            fleet.who.token,
        )
        assert runs["run"]["status"] == "CLAIMED"
        assert [h["toStatus"] for h in runs["run"]["history"]].count("CLAIMED") == 1
    await fleet.daemon.__aexit__()
