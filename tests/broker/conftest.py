"""Fixtures for the broker tests: a throw-away vhost on the real RabbitMQ, and machines in it.

Every session runs in its own vhost (deleted at the end, with all its queues and exchanges), so
these tests never see other tests' messages on tama.server.events and leave nothing behind.
Machine users are global to the broker; each test removes the ones it created.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import httpx
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import AMQPError

from taskmachine.dispatcher.broker_admin import BrokerAdmin
from taskmachine.settings import load_settings
from taskmachine.wire.topology import (
    ServerTopology,
    declare_machine_queues,
    declare_server_topology,
    delete_machine_queues,
    machine_username,
)

SETTINGS = load_settings()
MANAGEMENT_URL = SETTINGS.rabbitmq_management_url
_MANAGEMENT = urlsplit(MANAGEMENT_URL)
MANAGEMENT_AUTH = (_MANAGEMENT.username or "guest", _MANAGEMENT.password or "guest")
MANAGEMENT_API = urlunsplit(
    (_MANAGEMENT.scheme, f"{_MANAGEMENT.hostname}:{_MANAGEMENT.port or 15672}", "/api", "", "")
)
_HINT = "run scripts/ensure-services"


def amqp_url(username: str, password: str, vhost: str) -> str:
    """The configured broker address with other credentials and another vhost."""
    parts = urlsplit(SETTINGS.amqp_url)
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), "", ""))


async def arrival(
    queue: AbstractQueue, *, no_ack: bool = True, within: float = 5.0
) -> AbstractIncomingMessage:
    """The next message of a queue, waiting for it (dead-lettering, for one, is asynchronous)."""
    deadline = asyncio.get_running_loop().time() + within
    while (message := await queue.get(fail=False, no_ack=no_ack)) is None:
        assert asyncio.get_running_loop().time() < deadline, f"nothing arrived in {queue.name}"
        await asyncio.sleep(0.02)
    return message


@dataclass
class Machine:
    id: str
    password: str

    @property
    def username(self) -> str:
        return machine_username(self.id)


@pytest.fixture(scope="session")
async def management() -> AsyncIterator[httpx.AsyncClient]:
    """A raw management API client, to check what the broker holds independently of BrokerAdmin."""
    async with httpx.AsyncClient(base_url=MANAGEMENT_API, auth=MANAGEMENT_AUTH) as client:
        try:
            response = await client.get("/overview")
        except httpx.HTTPError as exc:
            pytest.fail(f"RabbitMQ management API at {MANAGEMENT_API} is down ({exc}): {_HINT}")
        assert response.status_code == 200, response.text
        yield client


@pytest.fixture(scope="session")
async def vhost(management: httpx.AsyncClient) -> AsyncIterator[str]:
    name = f"tama-test-broker-{secrets.token_hex(4)}"
    path = quote(name, safe="")
    response = await management.put(f"/vhosts/{path}")
    assert response.status_code in (201, 204), response.text
    guest = MANAGEMENT_AUTH[0]
    response = await management.put(
        f"/permissions/{path}/{guest}", json={"configure": ".*", "write": ".*", "read": ".*"}
    )
    assert response.status_code in (201, 204), response.text
    try:
        yield name
    finally:
        await management.delete(f"/vhosts/{path}")


@pytest.fixture(scope="session")
async def admin_connection(vhost: str) -> AsyncIterator[AbstractConnection]:
    """The server's side: the admin (guest) connection in the test vhost."""
    user, password = MANAGEMENT_AUTH
    try:
        connection = await aio_pika.connect(amqp_url(user, password, vhost), timeout=10)
    except (OSError, AMQPError) as exc:
        pytest.fail(
            f"RabbitMQ at {SETTINGS.amqp_url} is down ({exc!r}): run scripts/ensure-services"
        )
    async with connection:
        yield connection


@pytest.fixture
async def admin_channel(admin_connection: AbstractConnection) -> AsyncIterator[AbstractChannel]:
    channel = await admin_connection.channel()
    yield channel
    if not channel.is_closed:
        await channel.close()


@pytest.fixture
async def topology(admin_channel: AbstractChannel) -> ServerTopology:
    """The server topology, with the server's event queues and tama.dead emptied for this test."""
    declared = await declare_server_topology(admin_channel)
    await declared.server_events.purge()
    await declared.server_heartbeats.purge()
    await declared.dead_letters.purge()
    return declared


@pytest.fixture(scope="session")
async def broker_admin(vhost: str) -> AsyncIterator[BrokerAdmin]:
    async with BrokerAdmin(MANAGEMENT_URL, vhost) as admin:
        yield admin


MakeMachine = Callable[[], Awaitable[Machine]]


@pytest.fixture
async def make_machine(
    broker_admin: BrokerAdmin, admin_connection: AbstractConnection
) -> AsyncIterator[MakeMachine]:
    """Create machines as the server does: broker user, then its queues. Removed afterwards."""
    made: list[Machine] = []

    async def make() -> Machine:
        machine = Machine(id=str(uuid.uuid4()), password=secrets.token_urlsafe(24))
        made.append(machine)
        await broker_admin.create_machine_user(machine.id, machine.password)
        async with admin_connection.channel() as channel:
            await declare_machine_queues(channel, machine.id)
        return machine

    yield make
    async with admin_connection.channel() as channel:
        for machine in made:
            await broker_admin.remove_machine_user(machine.id)
            await delete_machine_queues(channel, machine.id)


ConnectAs = Callable[[Machine], Awaitable[AbstractConnection]]


@pytest.fixture
async def connect_as(vhost: str) -> AsyncIterator[ConnectAs]:
    """Open a plain (not robust) connection with a machine's own credentials."""
    opened: list[AbstractConnection] = []

    async def connect(machine: Machine) -> AbstractConnection:
        connection = await aio_pika.connect(
            amqp_url(machine.username, machine.password, vhost), timeout=10
        )
        opened.append(connection)
        return connection

    yield connect
    for connection in opened:
        if not connection.is_closed:
            await asyncio.wait_for(connection.close(), 5)
