"""Fixtures for the machine side against the real RabbitMQ: a throw-away vhost with the server's
topology, machines created the way the server creates them (broker user + queues), and a private
TASKMACHINE_HOME for every test.

Machine users are global to the broker; every test removes the ones it created. The vhost (with
its queues) is deleted at the end of the session.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue

from taskmachine.daemon.config import MachineConfig, save_config
from taskmachine.dispatcher.broker_admin import BrokerAdmin
from taskmachine.settings import load_settings
from taskmachine.wire.messages import Heartbeat
from taskmachine.wire.topology import (
    EVENTS_EXCHANGE,
    declare_machine_queues,
    declare_server_topology,
    delete_machine_queues,
    heartbeat_routing_key,
)

SETTINGS = load_settings()
_MANAGEMENT = urlsplit(SETTINGS.rabbitmq_management_url)
MANAGEMENT_AUTH = (_MANAGEMENT.username or "guest", _MANAGEMENT.password or "guest")
MANAGEMENT_API = urlunsplit(
    (_MANAGEMENT.scheme, f"{_MANAGEMENT.hostname}:{_MANAGEMENT.port or 15672}", "/api", "", "")
)
_BROKER = urlsplit(SETTINGS.amqp_url)
BROKER_HOST = _BROKER.hostname or "127.0.0.1"
BROKER_PORT = _BROKER.port or 5672


def amqp_url(username: str, password: str, vhost: str, *, port: int = BROKER_PORT) -> str:
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{BROKER_HOST}:{port}"
    return urlunsplit(("amqp", netloc, "/" + quote(vhost, safe=""), "", ""))


@pytest.fixture(autouse=True)
def machine_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own ~/.taskmachine, legacy config dir and HOME."""
    home = tmp_path / "tmhome"
    monkeypatch.setenv("TASKMACHINE_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    (tmp_path / "userhome").mkdir()
    yield home


@pytest.fixture
def backend() -> str:
    """The lead's servers run on SQLite here: this folder tests the machine, not the database."""
    return "sqlite"


@pytest.fixture(autouse=True)
async def remove_set_up_machine(machine_home: Path) -> AsyncIterator[None]:
    """A machine that `tama setup` connected in a test loses its (broker-global) user after it."""
    yield
    path = machine_home / "config.json"
    if not path.exists():
        return
    try:
        machine_id = json.loads(path.read_text()).get("machine_id")
    except ValueError:
        return
    if machine_id:
        async with BrokerAdmin(SETTINGS.rabbitmq_management_url) as admin:
            await admin.remove_machine_user(str(machine_id))


@pytest.fixture(scope="session")
async def management() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=MANAGEMENT_API, auth=MANAGEMENT_AUTH) as client:
        try:
            response = await client.get("/overview")
        except httpx.HTTPError as exc:
            pytest.fail(f"RabbitMQ management API at {MANAGEMENT_API} is down ({exc})")
        assert response.status_code == 200, response.text
        yield client


@pytest.fixture(scope="session")
async def vhost(management: httpx.AsyncClient) -> AsyncIterator[str]:
    name = f"tama-test-machine-{secrets.token_hex(4)}"
    path = quote(name, safe="")
    response = await management.put(f"/vhosts/{path}")
    assert response.status_code in (201, 204), response.text
    response = await management.put(
        f"/permissions/{path}/{MANAGEMENT_AUTH[0]}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    )
    assert response.status_code in (201, 204), response.text
    try:
        yield name
    finally:
        await management.delete(f"/vhosts/{path}")


@pytest.fixture(scope="session")
async def admin_connection(vhost: str) -> AsyncIterator[AbstractConnection]:
    """The server's side: the admin (guest) connection in the test vhost, topology declared."""
    try:
        connection = await aio_pika.connect(amqp_url(*MANAGEMENT_AUTH, vhost), timeout=10)
    except Exception as exc:
        pytest.fail(f"RabbitMQ at {SETTINGS.amqp_url} is down ({exc!r})")
    async with connection:
        async with connection.channel() as channel:
            await declare_server_topology(channel)
        yield connection


@pytest.fixture(scope="session")
async def broker_admin(vhost: str) -> AsyncIterator[BrokerAdmin]:
    async with BrokerAdmin(SETTINGS.rabbitmq_management_url, vhost) as admin:
        yield admin


@dataclass
class Machine:
    """A machine as the server creates it, with a queue that sees its heartbeats."""

    id: uuid.UUID
    password: str
    vhost: str
    heartbeats: AbstractQueue
    received: list[tuple[float, AbstractIncomingMessage]] = field(default_factory=list)

    @property
    def username(self) -> str:
        return f"machine-{self.id}"

    def url(self, port: int = BROKER_PORT) -> str:
        return amqp_url(self.username, self.password, self.vhost, port=port)

    def config(self, **overrides: object) -> MachineConfig:
        values: dict[str, object] = {
            "machine_id": self.id,
            "machine_name": "test-machine",
            "amqp_url": self.url(),
            "refresh_token": "unused-here",
            "heartbeat_interval_seconds": 0.2,
            "runtime_paths": {},
        }
        values.update(overrides)
        return MachineConfig.model_validate(values)

    def save(self, **overrides: object) -> MachineConfig:
        cfg = self.config(**overrides)
        save_config(cfg)
        return cfg

    def beats(self) -> list[Heartbeat]:
        return [Heartbeat.parse(message.body) for _, message in self.received]

    async def wait_beats(self, count: int, within: float = 10.0) -> list[Heartbeat]:
        """Wait until `count` heartbeats (in all) arrived; all of them."""
        deadline = asyncio.get_running_loop().time() + within
        while len(self.received) < count:
            assert asyncio.get_running_loop().time() < deadline, (
                f"only {len(self.received)} of {count} heartbeats within {within} s"
            )
            await asyncio.sleep(0.02)
        return self.beats()

    async def wait_for(self, check: Callable[[Heartbeat], bool], within: float = 10.0) -> Heartbeat:
        """The first heartbeat from now on that passes `check`."""
        start = len(self.received)
        deadline = asyncio.get_running_loop().time() + within
        while True:
            for beat in self.beats()[start:]:
                if check(beat):
                    return beat
            assert asyncio.get_running_loop().time() < deadline, "no matching heartbeat"
            await asyncio.sleep(0.02)


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 15.0) -> None:
    """Poll `check` until it is true; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert asyncio.get_running_loop().time() < deadline, f"not true within {within} s"
        await asyncio.sleep(0.05)


MakeMachine = Callable[[], Awaitable[Machine]]


@pytest.fixture
async def make_machine(
    broker_admin: BrokerAdmin, admin_connection: AbstractConnection, vhost: str
) -> AsyncIterator[MakeMachine]:
    made: list[Machine] = []
    channel = await admin_connection.channel()

    async def make() -> Machine:
        machine_id = uuid.uuid4()
        password = secrets.token_urlsafe(24)
        await broker_admin.create_machine_user(str(machine_id), password)
        await declare_machine_queues(channel, str(machine_id))
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(EVENTS_EXCHANGE, routing_key=heartbeat_routing_key(str(machine_id)))
        machine = Machine(machine_id, password, vhost, queue)
        loop = asyncio.get_running_loop()

        async def collect(message: AbstractIncomingMessage) -> None:
            machine.received.append((loop.time(), message))

        await queue.consume(collect, no_ack=True)
        made.append(machine)
        return machine

    yield make
    for machine in made:
        await broker_admin.remove_machine_user(str(machine.id))
        await delete_machine_queues(channel, str(machine.id))
    await channel.close()
