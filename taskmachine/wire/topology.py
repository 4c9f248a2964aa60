"""RabbitMQ names and declarations shared by the server and the daemon.

    tama.jobs     direct  machine.<id>                 -> tama.machine.<id>.jobs (priority 0-10)
    tama.control  direct  machine.<id>                 -> tama.machine.<id>.control
    tama.events   topic   machine.<id>.heartbeat       -> tama.server.heartbeats
                          machine.<id>.run.<run>.<kind> -> tama.server.events
                          machine.<id>.claim.<run>     -> tama.server.claims
    tama.live     topic   server <-> server fan-out of persisted changes
    tama.dead     fanout  -> queue tama.dead (dead letters of every queue above)

The server declares all of it with its admin connection, including each machine's two queues
when it creates the machine's broker user. A machine's user has no configure permission: the
daemon only passively declares its own queues (which needs no permission on RabbitMQ 3.10) and
consumes them (which needs read). Every queue is declared from `queue_arguments`, so a second
declaration by anyone is identical and never fails on mismatched arguments.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, FieldValue

JOBS_EXCHANGE = "tama.jobs"
CONTROL_EXCHANGE = "tama.control"
EVENTS_EXCHANGE = "tama.events"
LIVE_EXCHANGE = "tama.live"
DEAD_EXCHANGE = "tama.dead"
DEAD_QUEUE = "tama.dead"
SERVER_EVENTS_QUEUE = "tama.server.events"
SERVER_EVENTS_BINDING = "machine.*.run.#"
# Heartbeats have a queue of their own: a burst of them never delays a run's events, and each
# consumer can ack the way its messages need (heartbeats in batches, run events one by one).
SERVER_HEARTBEATS_QUEUE = "tama.server.heartbeats"
SERVER_HEARTBEATS_BINDING = "machine.*.heartbeat"
# Claims wait for their answer before a run can start: a queue of their own, so they never
# queue behind a burst of transcript output.
SERVER_CLAIMS_QUEUE = "tama.server.claims"
SERVER_CLAIMS_BINDING = "machine.*.claim.*"
# Before the split, tama.server.events took every machine event; unbound on declare.
_LEGACY_SERVER_EVENTS_BINDING = "machine.#"

# Job priorities are 0-9 (task priority); the queue allows 0-10 so a later urgent lane fits.
JOB_QUEUE_MAX_PRIORITY = 10
MACHINE_USERNAME_PREFIX = "machine-"

_EXCHANGE_TYPES: dict[str, aio_pika.ExchangeType] = {
    JOBS_EXCHANGE: aio_pika.ExchangeType.DIRECT,
    CONTROL_EXCHANGE: aio_pika.ExchangeType.DIRECT,
    EVENTS_EXCHANGE: aio_pika.ExchangeType.TOPIC,
    LIVE_EXCHANGE: aio_pika.ExchangeType.TOPIC,
    DEAD_EXCHANGE: aio_pika.ExchangeType.FANOUT,
}

# One routing-key word: no dots (they separate words) and no * or # (binding wildcards).
_WORD = re.compile(r"[A-Za-z0-9_-]{1,64}")

QueueKind = Literal["jobs", "control", "server_events", "dead"]


def check_machine_id(machine_id: str) -> str:
    """Return the id if it is a UUID in canonical form (lower case, hyphens), else ValueError.

    Canonical form matters: the id is part of broker user names, queue names and permission
    regexes, so two spellings of one UUID would be two different machines to RabbitMQ.
    """
    try:
        canonical = str(uuid.UUID(machine_id))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"machine id {machine_id!r} is not a UUID") from None
    if canonical != machine_id:
        raise ValueError(f"machine id {machine_id!r} is not in canonical form {canonical!r}")
    return machine_id


def _check_word(what: str, value: str) -> str:
    if not _WORD.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be 1-64 characters of letters, digits, '_' or '-'")
    return value


def machine_username(machine_id: str) -> str:
    """The machine's RabbitMQ user; also the `user_id` property of everything it publishes."""
    return MACHINE_USERNAME_PREFIX + check_machine_id(machine_id)


def machine_id_from_username(user_id: str | None) -> str | None:
    """The machine id behind a broker-validated `user_id`, or None if it is not a machine user."""
    if not user_id or not user_id.startswith(MACHINE_USERNAME_PREFIX):
        return None
    candidate = user_id.removeprefix(MACHINE_USERNAME_PREFIX)
    try:
        return check_machine_id(candidate)
    except ValueError:
        return None


def machine_routing_key(machine_id: str) -> str:
    """Routing key on tama.jobs and tama.control that reaches this machine's queue."""
    return f"machine.{check_machine_id(machine_id)}"


def jobs_queue(machine_id: str) -> str:
    return f"tama.machine.{check_machine_id(machine_id)}.jobs"


def control_queue(machine_id: str) -> str:
    return f"tama.machine.{check_machine_id(machine_id)}.control"


def heartbeat_routing_key(machine_id: str) -> str:
    return f"machine.{check_machine_id(machine_id)}.heartbeat"


def run_event_routing_key(machine_id: str, run_id: str, kind: str) -> str:
    return (
        f"machine.{check_machine_id(machine_id)}.run."
        f"{_check_word('run id', run_id)}.{_check_word('event kind', kind)}"
    )


def claim_routing_key(machine_id: str, run_id: str) -> str:
    return f"machine.{check_machine_id(machine_id)}.claim.{_check_word('run id', run_id)}"


@dataclass(frozen=True, slots=True)
class EventRoutingKey:
    """A parsed tama.events routing key; run_id is None for a heartbeat; kind "claim" for a
    claim."""

    machine_id: str
    kind: str
    run_id: str | None = None


def parse_event_routing_key(routing_key: str) -> EventRoutingKey | None:
    """Split a tama.events routing key; None if it has neither accepted shape."""
    parts = routing_key.split(".")
    if len(parts) < 3 or parts[0] != "machine":
        return None
    try:
        machine_id = check_machine_id(parts[1])
    except ValueError:
        return None
    if parts[2:] == ["heartbeat"]:
        return EventRoutingKey(machine_id=machine_id, kind="heartbeat")
    if len(parts) == 4 and parts[2] == "claim" and _WORD.fullmatch(parts[3]):
        return EventRoutingKey(machine_id=machine_id, kind="claim", run_id=parts[3])
    if len(parts) == 5 and parts[2] == "run" and all(_WORD.fullmatch(p) for p in parts[3:]):
        return EventRoutingKey(machine_id=machine_id, kind=parts[4], run_id=parts[3])
    return None


def queue_arguments(kind: QueueKind) -> dict[str, FieldValue]:
    """The x-arguments of each kind of queue; every declaration of a queue must use these."""
    arguments: dict[str, FieldValue] = {"x-queue-type": "classic"}
    if kind == "dead":
        # Dead letters stop here: a dead-letter exchange on this queue could loop.
        return arguments
    arguments["x-dead-letter-exchange"] = DEAD_EXCHANGE
    if kind == "jobs":
        arguments["x-max-priority"] = JOB_QUEUE_MAX_PRIORITY
    return arguments


@dataclass(frozen=True, slots=True)
class MachinePermissions:
    """What a machine's broker user may do, as RabbitMQ permission regexes.

    configure: nothing (the server declares its queues; a passive declare needs no permission).
    write: only the tama.events exchange, and there only routing keys machine.<id>.<...>.
    read: only its own jobs and control queues (basic.consume and basic.get check read).
    """

    configure: str
    write: str
    read: str
    topic_exchange: str
    topic_write: str
    topic_read: str


def machine_permissions(machine_id: str) -> MachinePermissions:
    # A canonical UUID is hex digits and hyphens only: literal in a regex, no escaping needed.
    mid = check_machine_id(machine_id)
    return MachinePermissions(
        configure="^$",
        write=f"^{re.escape(EVENTS_EXCHANGE)}$",
        read=f"^tama\\.machine\\.{mid}\\.(jobs|control)$",
        topic_exchange=EVENTS_EXCHANGE,
        topic_write=f"^machine\\.{mid}\\.",
        topic_read="^$",
    )


@dataclass(frozen=True, slots=True)
class ServerTopology:
    jobs: AbstractExchange
    control: AbstractExchange
    events: AbstractExchange
    live: AbstractExchange
    dead: AbstractExchange
    server_events: AbstractQueue
    server_heartbeats: AbstractQueue
    server_claims: AbstractQueue
    dead_letters: AbstractQueue


@dataclass(frozen=True, slots=True)
class MachineQueues:
    jobs: AbstractQueue
    control: AbstractQueue


async def _declare_exchanges(channel: AbstractChannel) -> dict[str, AbstractExchange]:
    return {
        name: await channel.declare_exchange(name, kind, durable=True)
        for name, kind in _EXCHANGE_TYPES.items()
    }


async def _declare_dead_letters(channel: AbstractChannel, dead: AbstractExchange) -> AbstractQueue:
    queue = await channel.declare_queue(DEAD_QUEUE, durable=True, arguments=queue_arguments("dead"))
    await queue.bind(dead, routing_key="")
    return queue


async def declare_server_topology(channel: AbstractChannel) -> ServerTopology:
    """Server side, idempotent: every exchange, the dead-letter queue and the server's two
    event queues."""
    exchanges = await _declare_exchanges(channel)
    events = exchanges[EVENTS_EXCHANGE]
    dead_letters = await _declare_dead_letters(channel, exchanges[DEAD_EXCHANGE])
    server_events = await channel.declare_queue(
        SERVER_EVENTS_QUEUE, durable=True, arguments=queue_arguments("server_events")
    )
    await server_events.bind(events, routing_key=SERVER_EVENTS_BINDING)
    # A broker set up by an older server still routes heartbeats here; unbinding is idempotent.
    await server_events.unbind(events, routing_key=_LEGACY_SERVER_EVENTS_BINDING)
    server_heartbeats = await channel.declare_queue(
        SERVER_HEARTBEATS_QUEUE, durable=True, arguments=queue_arguments("server_events")
    )
    await server_heartbeats.bind(events, routing_key=SERVER_HEARTBEATS_BINDING)
    server_claims = await channel.declare_queue(
        SERVER_CLAIMS_QUEUE, durable=True, arguments=queue_arguments("server_events")
    )
    await server_claims.bind(events, routing_key=SERVER_CLAIMS_BINDING)
    return ServerTopology(
        jobs=exchanges[JOBS_EXCHANGE],
        control=exchanges[CONTROL_EXCHANGE],
        events=exchanges[EVENTS_EXCHANGE],
        live=exchanges[LIVE_EXCHANGE],
        dead=exchanges[DEAD_EXCHANGE],
        server_events=server_events,
        server_heartbeats=server_heartbeats,
        server_claims=server_claims,
        dead_letters=dead_letters,
    )


async def declare_machine_queues(channel: AbstractChannel, machine_id: str) -> MachineQueues:
    """Server side, idempotent: a machine's jobs and control queues, bound to their exchanges.

    Declares the exchanges and the dead-letter queue too, so it does not depend on
    declare_server_topology having run first on this broker.
    """
    routing_key = machine_routing_key(machine_id)
    exchanges = await _declare_exchanges(channel)
    await _declare_dead_letters(channel, exchanges[DEAD_EXCHANGE])
    jobs = await channel.declare_queue(
        jobs_queue(machine_id), durable=True, arguments=queue_arguments("jobs")
    )
    await jobs.bind(exchanges[JOBS_EXCHANGE], routing_key=routing_key)
    control = await channel.declare_queue(
        control_queue(machine_id), durable=True, arguments=queue_arguments("control")
    )
    await control.bind(exchanges[CONTROL_EXCHANGE], routing_key=routing_key)
    return MachineQueues(jobs=jobs, control=control)


async def delete_machine_queues(channel: AbstractChannel, machine_id: str) -> None:
    """Server side, idempotent: drop a removed machine's queues and whatever is left in them.

    Cut the machine off first (BrokerAdmin.remove_machine_user): a robust connection of a
    still-authorised daemon would otherwise re-declare what was deleted.
    """
    await channel.queue_delete(jobs_queue(machine_id))
    await channel.queue_delete(control_queue(machine_id))


async def open_machine_queues(channel: AbstractChannel, machine_id: str) -> MachineQueues:
    """Daemon side: passively declare the machine's own two queues (they must already exist).

    A missing queue raises aio_pika.exceptions.ChannelNotFoundEntity and closes the channel.
    """
    jobs = await channel.declare_queue(jobs_queue(machine_id), passive=True)
    control = await channel.declare_queue(control_queue(machine_id), passive=True)
    return MachineQueues(jobs=jobs, control=control)


async def open_events_exchange(channel: AbstractChannel) -> AbstractExchange:
    """Daemon side: the tama.events exchange, checked to exist (a passive declare).

    Publish with user_id=machine_username(machine_id) so the server can trust the sender.
    """
    return await channel.declare_exchange(EVENTS_EXCHANGE, passive=True)
