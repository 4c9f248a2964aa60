"""Queue behaviour the dispatcher relies on: job priority, and dead letters instead of retries."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel

from taskmachine.wire.topology import (
    SERVER_HEARTBEATS_QUEUE,
    ServerTopology,
    heartbeat_routing_key,
    machine_routing_key,
    open_events_exchange,
    open_machine_queues,
)

from .conftest import ConnectAs, MakeMachine, arrival


async def test_job_queue_delivers_higher_priority_first_and_fifo_within_a_priority(
    topology: ServerTopology, make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a = await make_machine()
    sent = [
        (1, b"low-1"),
        (5, b"mid-1"),
        (9, b"high-1"),
        (1, b"low-2"),
        (5, b"mid-2"),
        (0, b"none"),
    ]
    for priority, body in sent:
        await topology.jobs.publish(
            aio_pika.Message(body, priority=priority),
            routing_key=machine_routing_key(a.id),
            timeout=5,
        )

    channel = await (await connect_as(a)).channel()
    queues = await open_machine_queues(channel, a.id)
    received = []
    while (message := await queues.jobs.get(fail=False, no_ack=True)) is not None:
        received.append(message.body)
    assert received == [b"high-1", b"mid-1", b"mid-2", b"low-1", b"low-2", b"none"]


async def test_rejected_event_is_dead_lettered_not_redelivered(
    topology: ServerTopology,
    make_machine: MakeMachine,
    connect_as: ConnectAs,
    admin_channel: AbstractChannel,
) -> None:
    a = await make_machine()
    channel = await (await connect_as(a)).channel()
    exchange = await open_events_exchange(channel)
    await exchange.publish(
        aio_pika.Message(b"not a heartbeat", user_id=a.username),
        routing_key=heartbeat_routing_key(a.id),
        timeout=5,
    )

    # The server's ingest finds the body invalid and rejects it without requeueing.
    message = await arrival(topology.server_heartbeats, no_ack=False)
    await message.reject(requeue=False)

    dead = await arrival(topology.dead_letters)
    assert dead.body == b"not a heartbeat"
    assert dead.user_id == a.username
    deaths = dead.headers["x-death"]
    assert isinstance(deaths, list) and isinstance(deaths[0], dict)
    assert deaths[0]["queue"] == SERVER_HEARTBEATS_QUEUE
    assert deaths[0]["reason"] == "rejected"
    assert await topology.server_heartbeats.get(fail=False) is None


async def test_job_rejected_by_the_daemon_is_dead_lettered(
    topology: ServerTopology, make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a = await make_machine()
    await topology.jobs.publish(
        aio_pika.Message(b"unreadable job", priority=4),
        routing_key=machine_routing_key(a.id),
        timeout=5,
    )
    channel = await (await connect_as(a)).channel()
    queues = await open_machine_queues(channel, a.id)
    job = await queues.jobs.get(timeout=5)
    await job.nack(requeue=False)

    dead = await arrival(topology.dead_letters)
    assert dead.body == b"unreadable job"
    assert await queues.jobs.get(fail=False) is None
