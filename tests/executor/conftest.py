"""Fixtures for the executor tests, against the real RabbitMQ in a throw-away vhost.

Each test gets a machine made the way the server makes one (broker user + queues), an executor
connected as that machine, and the server's view: jobs published to tama.jobs, run events read
from tama.server.events. Claims go to a stub (the server's claimRun is tested with the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from taskmachine.daemon.adapters import Adapter, ClaudeAdapter, CodexAdapter
from taskmachine.daemon.config import MachineConfig
from taskmachine.daemon.executor import ClaimUnavailable, RunExecutor
from taskmachine.dispatcher.broker_admin import BrokerAdmin
from taskmachine.settings import load_settings
from taskmachine.wire.runs import (
    RunFinished,
    RunJob,
    RunLimits,
    RunOutput,
    RunStarted,
    SkillFile,
    parse_run_event,
)
from taskmachine.wire.topology import (
    JOBS_EXCHANGE,
    declare_machine_queues,
    declare_server_topology,
    delete_machine_queues,
    machine_routing_key,
    machine_username,
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
FAKES = Path(__file__).parent / "fakes"
ADAPTER_FAKES = Path(__file__).parents[1] / "adapters" / "fakes"
REAL_CLIS = Path(__file__).parents[2] / ".tools" / "clis" / "node_modules" / ".bin"

RunEvent = RunStarted | RunOutput | RunFinished


def amqp_url(username: str, password: str, vhost: str, *, port: int = BROKER_PORT) -> str:
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{BROKER_HOST}:{port}"
    return urlunsplit(("amqp", netloc, "/" + quote(vhost, safe=""), "", ""))


@pytest.fixture(scope="session")
async def vhost() -> AsyncIterator[str]:
    name = f"tama-test-executor-{secrets.token_hex(4)}"
    path = quote(name, safe="")
    async with httpx.AsyncClient(base_url=MANAGEMENT_API, auth=MANAGEMENT_AUTH) as client:
        try:
            response = await client.put(f"/vhosts/{path}")
        except httpx.HTTPError as exc:
            pytest.fail(f"RabbitMQ management API at {MANAGEMENT_API} is down ({exc})")
        assert response.status_code in (201, 204), response.text
        response = await client.put(
            f"/permissions/{path}/{MANAGEMENT_AUTH[0]}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        assert response.status_code in (201, 204), response.text
        try:
            yield name
        finally:
            await client.delete(f"/vhosts/{path}")


@pytest.fixture(scope="session")
async def admin_connection(vhost: str) -> AsyncIterator[AbstractConnection]:
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


class EventLog:
    """The server's view: every run event that reaches tama.server.events, as it arrives."""

    def __init__(self) -> None:
        self.events: list[tuple[str | None, RunEvent]] = []
        self._changed = asyncio.Event()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            if message.routing_key and message.routing_key.endswith(".heartbeat"):
                return
            self.events.append((message.user_id, parse_run_event(message.body)))
            self._changed.set()

    def of(self, run_id: uuid.UUID) -> list[RunEvent]:
        return [event for _, event in self.events if event.run_id == run_id]

    def senders(self, run_id: uuid.UUID) -> set[str | None]:
        return {user for user, event in self.events if event.run_id == run_id}

    async def wait_for(
        self, check: Callable[[], bool], within: float = 20.0, what: str = "events"
    ) -> None:
        async with asyncio.timeout(within):
            while not check():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._changed.wait()
        assert check(), what

    async def finished(self, run_id: uuid.UUID, within: float = 20.0) -> RunFinished:
        def done() -> bool:
            return any(isinstance(e, RunFinished) for e in self.of(run_id))

        try:
            await self.wait_for(done, within)
        except TimeoutError:
            raise AssertionError(
                f"run {run_id} did not finish in {within} s: {self.of(run_id)}"
            ) from None
        return next(e for e in self.of(run_id) if isinstance(e, RunFinished))

    async def started(self, run_id: uuid.UUID, within: float = 20.0) -> None:
        await self.wait_for(lambda: any(isinstance(e, RunStarted) for e in self.of(run_id)), within)


@pytest.fixture
async def event_log(admin_connection: AbstractConnection) -> AsyncIterator[EventLog]:
    log = EventLog()
    channel = await admin_connection.channel()
    queue = await channel.declare_queue("tama.server.events", passive=True)
    await queue.purge()
    tag = await queue.consume(log.on_message)
    yield log
    await queue.cancel(tag)
    await channel.close()


@dataclass
class Machine:
    id: str
    password: str
    vhost: str

    @property
    def username(self) -> str:
        return machine_username(self.id)

    def url(self, port: int = BROKER_PORT) -> str:
        return amqp_url(self.username, self.password, self.vhost, port=port)


@pytest.fixture
async def machine(
    vhost: str, broker_admin: BrokerAdmin, admin_connection: AbstractConnection
) -> AsyncIterator[Machine]:
    made = Machine(id=str(uuid.uuid4()), password=secrets.token_urlsafe(24), vhost=vhost)
    await broker_admin.create_machine_user(made.id, made.password)
    async with admin_connection.channel() as channel:
        await declare_machine_queues(channel, made.id)
    yield made
    await broker_admin.remove_machine_user(made.id)
    async with admin_connection.channel() as channel:
        await delete_machine_queues(channel, made.id)


class StubClaimer:
    """The server's claimRun rule: one accepted claim per attempt. `unavailable` makes the next
    that many claims fail as if the server were down; `refuse` refuses those runs outright."""

    def __init__(self) -> None:
        self.calls: list[tuple[uuid.UUID, int]] = []
        self.accepted: set[tuple[uuid.UUID, int]] = set()
        self.unavailable = 0
        self.refuse: set[uuid.UUID] = set()

    async def claim(self, run_id: uuid.UUID, attempt: int) -> bool:
        self.calls.append((run_id, attempt))
        if self.unavailable > 0:
            self.unavailable -= 1
            raise ClaimUnavailable("server unreachable (stub)")
        if run_id in self.refuse or (run_id, attempt) in self.accepted:
            return False
        self.accepted.add((run_id, attempt))
        return True


def fake_cli(tmp_path: Path, script: str, name: str = "claude") -> Path:
    """A fake CLI (tests/executor/fakes or tests/adapters/fakes) as an executable in tmp_path."""
    source = FAKES / script if (FAKES / script).exists() else ADAPTER_FAKES / script
    target = tmp_path / "fakebin" / script / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR)
    return target


def adapter_for(executable: Path, kind: str = "claude") -> Callable[[str], Adapter]:
    def factory(runtime: str) -> Adapter:
        if kind == "codex":
            return CodexAdapter(executable)
        return ClaudeAdapter(executable)

    return factory


def make_job(
    *,
    runtime: str = "claude",
    prompt: str = "Do the task",
    workspace_id: uuid.UUID | None = None,
    subject_id: uuid.UUID | None = None,
    hard: float = 30.0,
    idle: float = 20.0,
    grace: float = 2.0,
    skills: list[SkillFile] | None = None,
    **fields: Any,
) -> RunJob:
    return RunJob(
        run_id=uuid.uuid4(),
        attempt=fields.pop("attempt", 1),
        workspace_id=workspace_id or uuid.uuid4(),
        subject_id=subject_id or uuid.uuid4(),
        subject_kind="task",
        runtime=runtime,
        prompt=prompt,
        run_token="run-token-secret",
        api_url="http://127.0.0.1:9",
        skills=skills or [],
        limits=RunLimits(
            hard_timeout_seconds=hard, idle_timeout_seconds=idle, cancel_grace_seconds=grace
        ),
        dispatched_at=datetime.now(UTC),
        **fields,
    )


Publish = Callable[..., Awaitable[None]]


@pytest.fixture
async def publish_job(
    admin_connection: AbstractConnection, machine: Machine
) -> AsyncIterator[Publish]:
    """Publish to tama.jobs as the server's outbox relay does (persistent, with a priority)."""
    channel = await admin_connection.channel()
    exchange = await channel.get_exchange(JOBS_EXCHANGE)

    async def publish(job: RunJob | bytes, priority: int = 5) -> None:
        body = job if isinstance(job, bytes) else job.to_body()
        await exchange.publish(
            aio_pika.Message(
                body,
                priority=priority,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
            ),
            routing_key=machine_routing_key(machine.id),
            timeout=10,
        )

    yield publish
    await channel.close()


def minimal_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    user_home = tmp_path / "user-home"
    user_home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(user_home), "LANG": "C.UTF-8", **extra}


@dataclass
class Harness:
    machine: Machine
    executor: RunExecutor
    claimer: StubClaimer
    config: MachineConfig
    connections: list[AbstractConnection] = field(default_factory=list)

    async def connect(self, port: int = BROKER_PORT) -> AbstractConnection:
        connection = await aio_pika.connect(self.machine.url(port), timeout=10)
        self.connections.append(connection)
        await self.executor.start(connection)
        return connection


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path, machine: Machine) -> AsyncIterator[MakeHarness]:
    made: list[Harness] = []

    async def make(
        *,
        capacity: int = 2,
        connect: bool = True,
        claimer: StubClaimer | None = None,
        env: dict[str, str] | None = None,
        workspace_repos: dict[uuid.UUID, Path] | None = None,
        runtime_paths: dict[str, Path] | None = None,
        **options: Any,
    ) -> Harness:
        config = MachineConfig(
            execution_root=tmp_path / "work",
            state_dir=tmp_path / "state",
            max_concurrency=capacity,
            workspace_repos=workspace_repos or {},
            runtime_paths=runtime_paths or {},
        )
        stub = claimer or StubClaimer()
        executor = RunExecutor(
            config,
            machine.id,
            stub,
            base_env=env if env is not None else minimal_env(tmp_path),
            claim_retry_seconds=0.1,
            **options,
        )
        harness = Harness(machine, executor, stub, config)
        made.append(harness)
        if connect:
            await harness.connect()
        return harness

    yield make
    for harness in made:
        with contextlib.suppress(Exception):
            await harness.executor.drain(timeout=5)
        await harness.executor.close()
        for connection in harness.connections:
            if not connection.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 5)


def seqs(events: Sequence[RunEvent]) -> list[int]:
    return [event.seq for event in events]


def texts(events: Sequence[RunEvent]) -> list[str]:
    return [
        str(item.get("text", ""))
        for event in events
        if isinstance(event, RunOutput)
        for item in event.events
        if item.get("kind") == "text"
    ]
