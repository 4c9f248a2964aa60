"""The broker itself confines each machine to its own queues and its own routing keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelClosed,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from taskmachine.wire.topology import (
    CONTROL_EXCHANGE,
    EVENTS_EXCHANGE,
    JOBS_EXCHANGE,
    ServerTopology,
    control_queue,
    declare_machine_queues,
    heartbeat_routing_key,
    jobs_queue,
    machine_id_from_username,
    machine_routing_key,
    open_events_exchange,
    open_machine_queues,
    parse_event_routing_key,
    queue_arguments,
    run_event_routing_key,
)

from .conftest import ConnectAs, MakeMachine, arrival


async def _channel_refused(
    channel: AbstractChannel,
    action: Callable[[AbstractChannel], Awaitable[Any]],
    error: type[ChannelClosed] = ChannelAccessRefused,
) -> str:
    """Run an action that the broker must refuse; return RabbitMQ's reason."""
    with pytest.raises(error) as refused:
        await action(channel)
    # The broker closes a channel on a permission error; nothing more happens on it.
    await asyncio.sleep(0.05)
    assert channel.is_closed
    return str(refused.value)


async def _ignore(message: AbstractIncomingMessage) -> None:
    return None


async def _publish_event(
    channel: AbstractChannel, routing_key: str, user_id: str | None, body: bytes = b"{}"
) -> None:
    exchange = await open_events_exchange(channel)
    await exchange.publish(
        aio_pika.Message(body, user_id=user_id, message_id=str(uuid.uuid4())),
        routing_key=routing_key,
        timeout=5,
    )


async def _nothing_arrived(topology: ServerTopology) -> None:
    await asyncio.sleep(0.2)
    assert await topology.server_events.get(fail=False) is None
    assert await topology.server_heartbeats.get(fail=False) is None


async def test_machine_consumes_its_own_jobs_and_control_queues(
    topology: ServerTopology, make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a = await make_machine()
    await topology.jobs.publish(
        aio_pika.Message(b"job for A", priority=3), routing_key=machine_routing_key(a.id), timeout=5
    )
    await topology.control.publish(
        aio_pika.Message(b"cancel for A"), routing_key=machine_routing_key(a.id), timeout=5
    )

    connection = await connect_as(a)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    queues = await open_machine_queues(channel, a.id)
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await received.put(message)

    await queues.jobs.consume(on_message)
    await queues.control.consume(on_message)
    bodies = {(await asyncio.wait_for(received.get(), 5)).body for _ in range(2)}
    assert bodies == {b"job for A", b"cancel for A"}


@pytest.mark.parametrize("queue_name", [jobs_queue, control_queue], ids=["jobs", "control"])
async def test_machine_cannot_read_another_machines_queue(
    queue_name: Callable[[str], str], make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a, b = await make_machine(), await make_machine()
    connection = await connect_as(a)

    async def consume(channel: AbstractChannel) -> None:
        queue = await channel.get_queue(queue_name(b.id), ensure=False)
        await queue.consume(_ignore)

    async def get(channel: AbstractChannel) -> None:
        queue = await channel.get_queue(queue_name(b.id), ensure=False)
        await queue.get(fail=False)

    for action in (consume, get):
        reason = await _channel_refused(await connection.channel(), action)
        assert "ACCESS_REFUSED" in reason
        assert queue_name(b.id) in reason
    # Its own connection survives: only the offending channel was closed.
    assert not connection.is_closed


async def test_machine_cannot_publish_under_another_machines_routing_key(
    topology: ServerTopology, make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a, b = await make_machine(), await make_machine()
    connection = await connect_as(a)
    for routing_key in (heartbeat_routing_key(b.id), run_event_routing_key(b.id, "r1", "output")):
        reason = await _channel_refused(
            await connection.channel(),
            partial(_publish_event, routing_key=routing_key, user_id=a.username),
        )
        assert "access to topic" in reason and routing_key in reason
    await _nothing_arrived(topology)


async def test_machine_cannot_publish_as_another_machine(
    topology: ServerTopology, make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a, b = await make_machine(), await make_machine()
    connection = await connect_as(a)
    reason = await _channel_refused(
        await connection.channel(),
        lambda channel: _publish_event(channel, heartbeat_routing_key(a.id), b.username),
        ChannelPreconditionFailed,
    )
    assert "user_id property set to" in reason and b.username in reason
    await _nothing_arrived(topology)


async def test_heartbeat_and_run_event_reach_the_server_with_the_validated_sender(
    topology: ServerTopology, make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a = await make_machine()
    connection = await connect_as(a)
    channel = await connection.channel()
    await _publish_event(channel, heartbeat_routing_key(a.id), a.username, b'{"v":1}')
    await _publish_event(channel, run_event_routing_key(a.id, "run-7", "output"), a.username)

    heartbeat = await arrival(topology.server_heartbeats)
    assert heartbeat.body == b'{"v":1}'
    assert heartbeat.user_id == a.username
    assert machine_id_from_username(heartbeat.user_id) == a.id
    key = parse_event_routing_key(heartbeat.routing_key or "")
    assert key is not None and (key.machine_id, key.kind, key.run_id) == (a.id, "heartbeat", None)

    run_event = await arrival(topology.server_events)
    key = parse_event_routing_key(run_event.routing_key or "")
    assert key is not None and (key.machine_id, key.run_id, key.kind) == (a.id, "run-7", "output")
    assert run_event.user_id == a.username
    # Each went to its own queue only.
    assert await topology.server_events.get(fail=False) is None
    assert await topology.server_heartbeats.get(fail=False) is None


async def test_machine_cannot_publish_elsewhere_or_declare_anything(
    make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a = await make_machine()
    connection = await connect_as(a)

    async def publish_to(channel: AbstractChannel, exchange_name: str, key: str) -> None:
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        await exchange.publish(aio_pika.Message(b"x", user_id=a.username), key, timeout=5)

    refusals: dict[str, Callable[[AbstractChannel], Awaitable[Any]]] = {
        "publish to tama.jobs": lambda ch: publish_to(ch, JOBS_EXCHANGE, machine_routing_key(a.id)),
        "publish to tama.control": lambda ch: publish_to(
            ch, CONTROL_EXCHANGE, machine_routing_key(a.id)
        ),
        "publish straight to its queue": lambda ch: publish_to(ch, "", jobs_queue(a.id)),
        "declare a new queue": lambda ch: ch.declare_queue(f"tama.machine.{a.id}.extra"),
        "declare a server-named queue": lambda ch: ch.declare_queue(exclusive=True),
        "re-declare its own queue actively": lambda ch: ch.declare_queue(
            jobs_queue(a.id), durable=True, arguments=queue_arguments("jobs")
        ),
        "declare an exchange": lambda ch: ch.declare_exchange(f"tama.{a.id}", durable=False),
        "re-bind its queue to the events exchange": lambda ch: _bind_own_queue(ch, a.id),
    }
    for what, action in refusals.items():
        channel = await connection.channel()
        try:
            await _channel_refused(channel, action)
        except BaseException as exc:
            raise AssertionError(f"{what}: not refused as expected") from exc
    assert not connection.is_closed


async def _bind_own_queue(channel: AbstractChannel, machine_id: str) -> None:
    queue = await channel.get_queue(jobs_queue(machine_id), ensure=False)
    await queue.bind(EVENTS_EXCHANGE, routing_key="machine.#")


async def test_server_redeclares_machine_queues_without_conflict(
    admin_channel: AbstractChannel, make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a = await make_machine()
    # A server restart declares the same queues again: identical arguments, no error.
    await declare_machine_queues(admin_channel, a.id)
    channel = await (await connect_as(a)).channel()
    queues = await open_machine_queues(channel, a.id)
    assert {queues.jobs.name, queues.control.name} == {jobs_queue(a.id), control_queue(a.id)}


async def test_daemon_does_not_create_missing_queues(
    admin_channel: AbstractChannel, make_machine: MakeMachine, connect_as: ConnectAs
) -> None:
    a = await make_machine()
    await admin_channel.queue_delete(jobs_queue(a.id))
    channel = await (await connect_as(a)).channel()
    reason = await _channel_refused(
        channel, lambda ch: open_machine_queues(ch, a.id), ChannelNotFoundEntity
    )
    assert jobs_queue(a.id) in reason
