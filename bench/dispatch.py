"""Dispatch latency, transcript latency and run throughput, end to end, beside their floors.

Everything runs here, on loopback, in a throw-away RabbitMQ vhost that is deleted afterwards
(with the machine user this run created), on a fresh database in a temporary folder:

- the real server (uvicorn in this process) with the Dispatcher;
- a machine connected through the approval flow, and the real `tama daemon` (RunExecutor, spool,
  HTTP claim) as a subprocess, configured with `runtime_paths["claude"]` = a no-op CLI
  (bench/dispatch_fake_claude.sh) that the claude adapter drives like the real one; the CLI
  appends its run id and a wall-clock reading to a file the moment it runs.

Printed, in one run:

(a) floors: a raw aio-pika publish → consume on the same broker (one hop), and the same with the
    consumer spawning the same no-op CLI, until that process runs; each back to back, and again
    paced like the measures below (one every 60 ms: processes that sat idle take longer to
    wake, so a paced measure is compared with a paced floor as well);
(b) dispatch: the `assignTask` mutation sent → the CLI process running, one assignment at a
    time, with where the time went (run transitions are timestamped);
(c) transcript: the CLI prints a line carrying its clock → a `runTranscript` subscriber (gql over
    graphql-transport-ws, in a process of its own: bench/dispatch_subscriber.py) receives it;
(d) throughput: many tasks assigned at once (several agents, raised agent concurrency and
    machine capacity) by clients in a process of their own (bench/dispatch_load.py) → every run
    succeeded: runs per second; and the CPU each process spent per run (server, daemon, the CLIs
    it ran, the broker, the clients), with the CPUs the target would keep busy at that cost.

The last line is one JSON object (the first database's figures; SQLite, the embedded default).

    .venv/bin/python bench/dispatch.py [--samples 200] [--lines 150] [--runs 500]
        [--capacity 64] [--agents 4] [--backends sqlite,postgres]
        [--phases dispatch,transcript,throughput]   (the floors always run)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import httpx
import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext.asyncio import create_async_engine

from taskmachine import models as m
from taskmachine.daemon.approval import credentials_from
from taskmachine.daemon.config import MachineConfig, save_config
from taskmachine.dispatcher.service import Dispatcher
from taskmachine.domain import people
from taskmachine.server import ServerOptions, create_app
from taskmachine.server_cli import _tune_gc as tune_gc
from taskmachine.settings import Settings
from taskmachine.wire.topology import machine_username

REPO = Path(__file__).resolve().parents[1]
FAKE_CLI = Path(__file__).with_name("dispatch_fake_claude.sh")
LOAD_SCRIPT = Path(__file__).with_name("dispatch_load.py")
SUBSCRIBER_SCRIPT = Path(__file__).with_name("dispatch_subscriber.py")
TAMA = Path(sys.executable).with_name("tama")
PG_ADMIN = os.environ.get("TASKMACHINE_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
LOCAL = Settings()  # the local broker's addresses (defaults and TASKMACHINE_* overrides)
BACKENDS = ("sqlite", "postgres")
PHASES = ("dispatch", "transcript", "throughput")

DISPATCH_MAX_MS, DISPATCH_P99_MS, DISPATCH_FLOOR_X = 30.0, 100.0, 3.0
TRANSCRIPT_MAX_MS, TRANSCRIPT_P99_MS, TRANSCRIPT_FLOOR_X = 5.0, 25.0, 2.0
TARGET_RUNS_PER_S = 200.0
PEER_DISPATCH_MS, PEER_TRANSCRIPT_MS = 236.0, 1.6
# The no-op CLI prints a transcript line every 60 ms; the paced floors wait as long between samples.
PACE_SECONDS = 0.06

REQUEST = """mutation($i: MachineApprovalRequestInput!) { requestMachineApproval(input: $i) {
  userCode pollToken } }"""
APPROVE = """mutation($c: String!, $w: [ID!]!) { approveMachine(code: $c, workspaceIds: $w) {
  status } }"""
POLL = """mutation($t: String!) { pollMachineApproval(pollToken: $t) { status credentials {
  machineId machineName accessToken accessTokenExpiresAt refreshToken amqpUrl } } }"""
RUNTIMES = "query($w: ID!) { runtimes(workspaceId: $w) { id name available ready } }"
ENABLE = "mutation($r: ID!) { setRuntimeEnabled(runtimeId: $r, enabled: true) { id } }"
CREATE_AGENT = """mutation($w: ID!, $r: ID!, $n: String!, $c: Int!) { createAgent(workspaceId: $w,
  profile: {name: $n, defaultRuntimeId: $r, concurrencyLimit: $c}) { id } }"""
CREATE_TASK = """mutation($w: ID!, $t: String!) { createTask(input: {workspaceId: $w, title: $t,
  description: $t}) { id } }"""
ASSIGN = "mutation($t: ID!, $a: ID!) { assignTask(input: {taskId: $t, agentId: $a}) { id } }"


# --- numbers ------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return math.nan  # a phase left out with --phases
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Timing:
    name: str
    samples: list[float]  # milliseconds

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    def line(self) -> str:
        return (
            f"  {self.name:<44} p50 {self.p50:7.2f} ms   p99 {self.p99:7.2f} ms"
            f"   (n={len(self.samples)})"
        )


def _figure(value: float, digits: int) -> float | None:
    """Rounded for the JSON line; None for a phase left out (NaN is not JSON)."""
    return None if math.isnan(value) else round(value, digits)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


class Marks:
    """The no-op CLI's "<run id> <wall clock>" lines, read as they are appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        self._offset = 0
        self.seen: dict[str, float] = {}

    def poll(self) -> None:
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode().splitlines():
            run_id, stamp = line.split()
            self.seen[run_id] = float(stamp)

    async def wait(self, run_id: str, within: float = 30.0) -> float:
        deadline = time.monotonic() + within
        while True:
            self.poll()
            if run_id in self.seen:
                return self.seen[run_id]
            if time.monotonic() > deadline:
                raise RuntimeError(f"the CLI of run {run_id} did not start within {within} s")
            await asyncio.sleep(0.002)

    def known(self) -> set[str]:
        self.poll()
        return set(self.seen)

    async def first_new(self, known: set[str], within: float = 30.0) -> tuple[str, float]:
        """The first CLI to start of a run not in `known` (taken before the request that starts
        it: the CLI may run before the response is back). No database read on the way, so
        watching does not compete with the server for its one SQLite connection."""
        deadline = time.monotonic() + within
        while True:
            self.poll()
            new = [(stamp, run_id) for run_id, stamp in self.seen.items() if run_id not in known]
            if new:
                stamp, run_id = min(new)
                return run_id, stamp
            if time.monotonic() > deadline:
                raise RuntimeError(f"no CLI started within {within} s")
            await asyncio.sleep(0.002)


# --- the pieces -----------------------------------------------------------------------------


def _management() -> tuple[str, tuple[str, str]]:
    parts = urlsplit(LOCAL.rabbitmq_management_url)
    api = urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port or 15672}", "/api", "", ""))
    return api, (parts.username or "guest", parts.password or "guest")


def _amqp_url(vhost: str) -> str:
    parts = urlsplit(LOCAL.amqp_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


@contextlib.asynccontextmanager
async def throwaway_vhost() -> AsyncIterator[tuple[str, list[str]]]:
    """A vhost of this run's own; the machine users listed in the second item are deleted too."""
    api, auth = _management()
    name = f"tama-bench-dispatch-{secrets.token_hex(4)}"
    users: list[str] = []
    async with httpx.AsyncClient(base_url=api, auth=auth, timeout=10) as client:
        try:
            made = await client.put(f"/vhosts/{quote(name, safe='')}")
        except httpx.HTTPError as exc:
            raise SystemExit(f"RabbitMQ management API at {api} is down ({exc})") from None
        made.raise_for_status()
        granted = await client.put(
            f"/permissions/{quote(name, safe='')}/{auth[0]}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        granted.raise_for_status()
        try:
            yield name, users
        finally:
            for user in users:
                await client.delete(f"/users/{quote(user, safe='')}")
            await client.delete(f"/vhosts/{quote(name, safe='')}")


async def _pg(sql: str) -> None:
    engine = create_async_engine(f"{PG_ADMIN}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'taskmachine.db'}"
        return
    name = f"tm_bench_dispatch_{secrets.token_hex(4)}"
    await _pg(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN}/{name}"
    finally:
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Server:
    url: str
    database_url: str
    app: Any
    http: httpx.AsyncClient
    token: str = ""

    @property
    def state(self) -> Any:
        return self.app.state.taskmachine

    async def ok(
        self, query: str, variables: dict[str, Any] | None = None, auth: bool = True
    ) -> Any:
        headers = {"authorization": f"Bearer {self.token}"} if auth and self.token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL error: {body['errors']}")
        return body["data"]


@contextlib.asynccontextmanager
async def running_server(database_url: str, vhost: str, workdir: Path) -> AsyncIterator[Server]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        data_dir=workdir / "data",
        database_url=database_url,
        amqp_url=_amqp_url(vhost),
        public_url=url,
        secret_key="bench-dispatch",
        log_json=False,
        log_level="WARNING",
    )
    app = create_app(settings, ServerOptions(migrate_on_start=True, components=[Dispatcher()]))
    tune_gc()  # as `taskmachine serve` does after create_app: the shipped default
    config = uvicorn.Config(app, log_config=None, lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.01)
    http = httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=64))
    try:
        yield Server(url, database_url, app, http)
    finally:
        await http.aclose()
        server.should_exit = True
        await task
        sock.close()


async def owner_token(server: Server) -> str:
    async with server.state.session_factory() as session:
        user = await people.get_or_create_user(session, "bench@example.com")
        _, secret = await people.create_api_token(
            session, server.state.hasher, user.id, "bench", None
        )
        await session.commit()
    return str(secret)


async def connect_machine(server: Server, workspace_id: str) -> dict[str, Any]:
    """The approval flow, as `tama setup` and the owner's browser go through it."""
    ticket = (
        await server.ok(
            REQUEST,
            {"i": {"name": "bench-box", "hostname": "bench", "os": "linux", "cliVersion": "0.1.0"}},
            auth=False,
        )
    )["requestMachineApproval"]
    await server.ok(APPROVE, {"c": ticket["userCode"], "w": [workspace_id]})
    poll = (await server.ok(POLL, {"t": ticket["pollToken"]}, auth=False))["pollMachineApproval"]
    if poll["status"] != "APPROVED":
        raise RuntimeError(f"machine not approved: {poll}")
    creds: dict[str, Any] = poll["credentials"]
    return creds


@contextlib.asynccontextmanager
async def tama_daemon(
    creds: dict[str, Any], server: Server, workdir: Path, capacity: int, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`tama daemon` as its own process, configured as `tama setup` would leave it."""
    home = workdir / "tama-home"
    cfg = credentials_from(creds).apply_to(
        MachineConfig(
            execution_root=workdir / "work",
            state_dir=workdir / "state",
            runtime_paths={"claude": FAKE_CLI},
            heartbeat_interval_seconds=1.0,
            max_concurrency=capacity,
        ),
        server.url,
    )
    save_config(cfg, home / "config.json")
    process = await asyncio.create_subprocess_exec(
        str(TAMA),
        "daemon",
        env={**env, "TASKMACHINE_HOME": str(home)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(workdir / "daemon.log").open("wb"),
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


async def run_of(server: Server, task_id: str) -> m.Run | None:
    async with server.state.session_factory() as session:
        row: m.Run | None = await session.scalar(
            sa.select(m.Run).where(m.Run.task_id == uuid.UUID(task_id)).order_by(m.Run.id.desc())
        )
        return row


async def recorded_run(server: Server, task_id: str) -> m.Run:
    run: m.Run = await eventually(lambda: run_of(server, task_id), 10, "run recorded")
    return run


async def wait_finished(server: Server, task_id: str, within: float = 30.0) -> m.Run:
    async def done() -> m.Run | None:
        run = await run_of(server, task_id)
        finished = run is not None and run.status in (
            m.RunStatus.SUCCEEDED,
            m.RunStatus.FAILED,
            m.RunStatus.CANCELLED,
        )
        return run if finished else None

    run: m.Run = await eventually(done, within, f"run of task {task_id} finished")
    if run.status is not m.RunStatus.SUCCEEDED:
        raise RuntimeError(f"run {run.id} ended {run.status.value}: {run.failure_code} {run.error}")
    return run


# --- (a) floors ------------------------------------------------------------------------------


@dataclass
class Floors:
    hop: Timing  # one after another
    spawn: Timing
    hop_paced: Timing  # one every PACE_SECONDS
    spawn_paced: Timing


async def floors(vhost: str, samples: int, marks: Marks, env: dict[str, str]) -> Floors:
    """Publish → consume, and publish → consume → spawn → the process runs, one at a time: back
    to back, then with PACE_SECONDS between samples."""
    connection = await aio_pika.connect(_amqp_url(vhost), timeout=10)
    async with connection:
        publishing = await connection.channel()
        consuming = await connection.channel()
        queue = await consuming.declare_queue(exclusive=True, auto_delete=True)
        arrived: asyncio.Queue[float] = asyncio.Queue()
        spawn = False

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if spawn:
                await asyncio.create_subprocess_exec(
                    str(FAKE_CLI),
                    "-p",
                    env={**env, "TASKMACHINE_RUN_ID": message.body.decode()},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )
            await message.ack()
            arrived.put_nowait(time.time())

        await queue.consume(on_message)

        async def one(body: str, pause: float = 0.0) -> float:
            await asyncio.sleep(pause)
            sent = time.time()
            await publishing.default_exchange.publish(
                aio_pika.Message(body.encode()), routing_key=queue.name, timeout=10
            )
            got = await asyncio.wait_for(arrived.get(), 10)
            if spawn:
                got = await marks.wait(body)
            return (got - sent) * 1000

        for _ in range(20):  # warm-up
            await one("warm")
        hop = [await one("hop") for _ in range(samples)]
        hop_paced = [await one("hop", PACE_SECONDS) for _ in range(samples)]
        spawn = True
        await one("floor-warm")
        spawned = [await one(f"floor-{i}") for i in range(samples)]
        spawned_paced = [await one(f"paced-{i}", PACE_SECONDS) for i in range(samples)]
        await asyncio.sleep(0.2)  # let the last no-op CLIs exit
        return Floors(
            Timing("one hop: publish → consume", hop),
            Timing("spawn floor: publish → consume → CLI running", spawned),
            Timing(f"one hop, one every {PACE_SECONDS * 1000:g} ms", hop_paced),
            Timing(f"spawn floor, one every {PACE_SECONDS * 1000:g} ms", spawned_paced),
        )


# --- the system --------------------------------------------------------------------------------


@dataclass
class Fleet:
    server: Server
    workspace_id: str
    agents: list[str]


async def make_fleet(server: Server) -> Fleet:
    server.token = await owner_token(server)
    ws = await server.ok('mutation { createWorkspace(input: {name: "Bench"}) { id } }')
    workspace_id = ws["createWorkspace"]["id"]
    return Fleet(server, workspace_id, [])


async def enable_runtime(fleet: Fleet, agents: int, concurrency: int) -> None:
    async def ready_runtime() -> str | None:
        data = await fleet.server.ok(RUNTIMES, {"w": fleet.workspace_id})
        found = [r for r in data["runtimes"] if r["name"] == "claude" and r["available"]]
        return str(found[0]["id"]) if found else None

    runtime_id = await eventually(ready_runtime, 60, "the daemon reported claude")
    await fleet.server.ok(ENABLE, {"r": runtime_id})
    for i in range(agents):
        made = await fleet.server.ok(
            CREATE_AGENT,
            {"w": fleet.workspace_id, "r": runtime_id, "n": f"Bench {i}", "c": concurrency},
        )
        fleet.agents.append(str(made["createAgent"]["id"]))

    async def ready() -> bool:
        data = await fleet.server.ok(RUNTIMES, {"w": fleet.workspace_id})
        return any(r["name"] == "claude" and r["ready"] for r in data["runtimes"])

    await eventually(ready, 30, "the claude runtime is ready")


async def create_tasks(fleet: Fleet, count: int, title: str, parallel: int = 16) -> list[str]:
    ids: list[str] = [""] * count
    cursor = iter(range(count))

    async def worker() -> None:
        for i in cursor:
            made = await fleet.server.ok(
                CREATE_TASK, {"w": fleet.workspace_id, "t": f"{title} {i}"}
            )
            ids[i] = str(made["createTask"]["id"])

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return ids


@contextlib.asynccontextmanager
async def helper_process(
    script: Path, job: dict[str, Any]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """One of the bench's helper scripts in a process of its own, given `job` as its first stdin
    line; entered once it answered `ready`, killed on the way out if it still runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json.dumps(job).encode() + b"\n")
        await process.stdin.drain()
        if (await asyncio.wait_for(process.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError(f"{script.name} did not start")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


# --- (b) dispatch ------------------------------------------------------------------------------


STAGES = ("queued", "dispatched", "claimed", "running")


async def dispatch_latency(fleet: Fleet, samples: int, marks: Marks) -> tuple[Timing, list[Timing]]:
    """assignTask sent → the CLI runs, one assignment at a time; plus when each transition was
    recorded (queued, dispatched, claimed, running) counted from the mutation."""
    server = fleet.server
    tasks = await create_tasks(fleet, samples + 10, "Dispatch")
    totals: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for i, task_id in enumerate(tasks):
        known = marks.known()
        sent = time.time()
        await server.ok(ASSIGN, {"t": task_id, "a": fleet.agents[0]})
        run_id, running = await marks.first_new(known)
        run = await wait_finished(server, task_id)
        if str(run.id) != run_id:
            raise RuntimeError(f"the CLI that started ran {run_id}, not the run of {task_id}")
        if i < 10:
            continue  # warm-up
        totals.append((running - sent) * 1000)
        async with server.state.session_factory() as session:
            rows = (
                await session.scalars(
                    sa.select(m.RunTransition).where(m.RunTransition.run_id == run.id)
                )
            ).all()
        for row in rows:
            if row.to_status.value in stages and row.attempt == 1:
                at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
                stages[row.to_status.value].append((at.timestamp() - sent) * 1000)
    parts = [Timing(f"  … {name} recorded", values) for name, values in stages.items() if values]
    return Timing("assignTask → CLI running", totals), parts


# --- (c) transcript --------------------------------------------------------------------------


@dataclass
class TranscriptCPU:
    """CPU per transcript line, in ms, by process."""

    server: float = math.nan
    daemon: float = math.nan
    subscriber: float = math.nan


def _process_cpu(pid: int, *, children: bool = False) -> float:
    """utime + stime of a process, in seconds (Linux); with `children`, also that of the
    children it has reaped (the daemon's CLIs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _broker_pid() -> int | None:
    """The local RabbitMQ's Erlang VM, if this user may read its process entry."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes()
            if b"beam.smp" in command and b"rabbit" in command:
                return int(entry.name)
    return None


async def transcript_latency(
    fleet: Fleet, lines: int, go_dir: Path, marks: Marks, daemon_pid: int
) -> tuple[Timing, TranscriptCPU]:
    """The CLI prints a line with its clock in it; a runTranscript subscriber, in a process of its
    own (bench/dispatch_subscriber.py), receives it. Also returns the CPU per line (ms) of the
    server (this process), the daemon and the subscriber."""
    server = fleet.server
    (task_id,) = await create_tasks(fleet, 1, "BENCH-TRANSCRIPT")
    await server.ok(ASSIGN, {"t": task_id, "a": fleet.agents[0]})
    run = await eventually(lambda: run_of(server, task_id), 10, "run recorded")
    await marks.wait(str(run.id))
    job = {"url": server.url, "token": server.token, "run_id": str(run.id), "lines": lines}
    async with helper_process(SUBSCRIBER_SCRIPT, job) as subscriber:
        assert subscriber.stdout is not None
        cpu_here, cpu_daemon = time.process_time(), _process_cpu(daemon_pid)
        (go_dir / str(run.id)).write_text(str(lines))
        answer = json.loads(await asyncio.wait_for(subscriber.stdout.readline(), 30 + lines))
        cpu_here = (time.process_time() - cpu_here) * 1000 / lines
        cpu_daemon = (_process_cpu(daemon_pid) - cpu_daemon) * 1000 / lines
    await wait_finished(server, task_id)
    samples: list[float] = answer["samples"]
    timing = Timing("CLI line → runTranscript subscriber", samples[min(5, len(samples) // 4) :])
    return timing, TranscriptCPU(cpu_here, cpu_daemon, answer["cpu_seconds"] * 1000 / lines)


# --- (d) throughput --------------------------------------------------------------------------


@dataclass
class Throughput:
    runs_per_s: float = math.nan  # from the first assignment to the last finish
    assign_per_s: float = math.nan
    failed: int = 0
    gaps: list[Timing] = field(default_factory=list)
    # CPU per run over the phase, in ms, by process: the server (this process), the daemon,
    # the CLIs it ran, the broker, the assigning clients.
    cpu_ms: dict[str, float] = field(default_factory=dict)


async def throughput(fleet: Fleet, runs: int, parallel: int, daemon_pid: int) -> Throughput:
    """Assign `runs` tasks as fast as `parallel` clients can, from a process of their own
    (bench/dispatch_load.py); every run must succeed."""
    server = fleet.server
    tasks = await create_tasks(fleet, runs, "Throughput")
    ids = [uuid.UUID(t) for t in tasks]
    # Counted on a connection of its own (not the server's: on SQLite, its only one), now and
    # then: the phase ends at the last run's recorded finish, so polling more often would only
    # take CPU from the server it measures.
    watcher = create_async_engine(server.database_url, poolclass=sa.NullPool)
    count = (
        sa.select(m.Run.status, sa.func.count(), sa.func.max(m.Run.finished_at))
        .where(m.Run.task_id.in_(ids))
        .group_by(m.Run.status)
    )

    async def finished() -> tuple[int, int, float]:
        """Runs succeeded, runs failed, and the wall clock of the last finish recorded."""
        async with watcher.connect() as connection:
            rows = (await connection.execute(count)).all()
        counts = {status: n for status, n, _ in rows}
        last = max((at for _, _, at in rows if at is not None), default=None)
        done = counts.get(m.RunStatus.SUCCEEDED, 0)
        failed = counts.get(m.RunStatus.FAILED, 0) + counts.get(m.RunStatus.CANCELLED, 0)
        at = (last if last.tzinfo else last.replace(tzinfo=UTC)).timestamp() if last else 0.0
        return done, failed, at

    job = {
        "url": server.url,
        "token": server.token,
        "pairs": [[t, fleet.agents[i % len(fleet.agents)]] for i, t in enumerate(tasks)],
        "parallel": parallel,
    }
    try:
        async with helper_process(LOAD_SCRIPT, job) as load:
            answer, elapsed, failed, cpu_ms = await _assign_all(load, runs, daemon_pid, finished)
    finally:
        await watcher.dispose()
    cpu_ms["clients"] = answer["cpu_seconds"] * 1000 / runs
    return Throughput(
        runs / elapsed, runs / answer["seconds"], failed, await stage_gaps(server, ids), cpu_ms
    )


async def _assign_all(
    load: asyncio.subprocess.Process,
    runs: int,
    daemon_pid: int,
    finished: Callable[[], Awaitable[tuple[int, int, float]]],
) -> tuple[dict[str, Any], float, int, dict[str, float]]:
    """Tell the ready assigning process to go and wait until every run has ended. Returns its
    answer, the seconds from go to the last finish recorded, the runs that failed, and the CPU
    per run (ms) of the processes measured here."""
    assert load.stdin is not None and load.stdout is not None
    broker = _broker_pid()

    def cpu_now() -> dict[str, float]:
        daemon = _process_cpu(daemon_pid)
        return {
            "server": time.process_time(),
            "daemon": daemon,
            "CLIs": _process_cpu(daemon_pid, children=True) - daemon,
            "broker": _process_cpu(broker) if broker else math.nan,
        }

    cpu_before = cpu_now()
    started, started_at = time.monotonic(), time.time()
    load.stdin.write(b"go\n")
    await load.stdin.drain()
    answer = json.loads(await asyncio.wait_for(load.stdout.readline(), max(120.0, runs)))
    if answer["errors"]:
        raise RuntimeError(f"throughput: assignments failed: {answer['errors']}")
    deadline = started + max(120.0, float(runs))  # at least one run a second
    while True:
        done, failed, last_finish = await finished()
        if done + failed >= runs:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"throughput: only {done} of {runs} runs finished in time")
        await asyncio.sleep(0.25)
    cpu_after = cpu_now()  # includes up to one poll's idle time: a slight overcount
    cpu_ms = {name: (cpu_after[name] - cpu_before[name]) * 1000 / runs for name in cpu_before}
    return answer, last_finish - started_at, failed, cpu_ms


async def stage_gaps(server: Server, task_ids: list[uuid.UUID]) -> list[Timing]:
    """Per run, the time from one recorded status to the next (where a loaded system waits)."""
    async with server.state.session_factory() as session:
        rows = (
            await session.execute(
                sa.select(
                    m.RunTransition.run_id, m.RunTransition.to_status, m.RunTransition.created_at
                )
                .join(m.Run, m.Run.id == m.RunTransition.run_id)
                .where(m.Run.task_id.in_(task_ids))
            )
        ).all()
    by_run: dict[uuid.UUID, dict[str, float]] = {}
    for run_id, status, at in rows:
        by_run.setdefault(run_id, {})[status.value] = at.replace(tzinfo=UTC).timestamp()
    order = ["queued", "dispatched", "claimed", "running", "succeeded"]
    gaps = []
    for before, after in itertools.pairwise(order):
        values = [
            (times[after] - times[before]) * 1000
            for times in by_run.values()
            if before in times and after in times
        ]
        if values:
            gaps.append(Timing(f"  … {before} → {after}", values))
    return gaps


# --- one database ----------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    floors: Floors
    dispatch: Timing
    stages: list[Timing]
    transcript: Timing
    transcript_cpu: TranscriptCPU
    throughput: Throughput


async def bench_backend(backend: str, args: argparse.Namespace) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="tama-bench-dispatch-"))
    try:
        marks = Marks(workdir / "marks")
        go_dir = workdir / "go"
        go_dir.mkdir()
        cli_env = {**os.environ, "BENCH_MARKS": str(marks.path), "BENCH_GO": str(go_dir)}
        cli_env = {k: v for k, v in cli_env.items() if not k.startswith("TASKMACHINE_")}
        async with (
            throwaway_vhost() as (vhost, users),
            database(backend, workdir) as database_url,
            running_server(database_url, vhost, workdir) as server,
        ):
            floor = await floors(vhost, args.samples, marks, cli_env)
            fleet = await make_fleet(server)
            creds = await connect_machine(server, fleet.workspace_id)
            users.append(machine_username(creds["machineId"]))
            async with tama_daemon(creds, server, workdir, args.capacity, cli_env) as daemon:
                await enable_runtime(fleet, args.agents, args.concurrency)
                dispatch = Timing("assignTask → CLI running", [])
                stages: list[Timing] = []
                if "dispatch" in args.phases:
                    dispatch, stages = await dispatch_latency(fleet, args.samples, marks)
                transcript = Timing("CLI line → runTranscript subscriber", [])
                transcript_cpu = TranscriptCPU()
                if "transcript" in args.phases:
                    transcript, transcript_cpu = await transcript_latency(
                        fleet, args.lines, go_dir, marks, daemon.pid
                    )
                runs = Throughput()
                if "throughput" in args.phases:
                    runs = await throughput(fleet, args.runs, args.parallel, daemon.pid)
        return Result(backend, floor, dispatch, stages, transcript, transcript_cpu, runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(result: Result, args: argparse.Namespace) -> None:
    r = result
    f = r.floors
    print(f"\n== {r.backend} ==")
    print("(a) floors, measured now on this broker")
    for timing in (f.hop, f.spawn, f.hop_paced, f.spawn_paced):
        print(timing.line())
    if "dispatch" in args.phases:
        print("(b) dispatch, one assignment at a time (the next once the run finished)")
        print(r.dispatch.line())
        for stage in r.stages:
            print(stage.line())
        ok_b = (
            r.dispatch.p50 <= DISPATCH_FLOOR_X * f.spawn.p50
            and r.dispatch.p50 < DISPATCH_MAX_MS
            and r.dispatch.p99 < DISPATCH_P99_MS
        )
        print(
            f"  target: p50 ≤ {DISPATCH_FLOOR_X:g}× floor ({DISPATCH_FLOOR_X * f.spawn.p50:.2f} ms) and"
            f" < {DISPATCH_MAX_MS:g} ms, p99 < {DISPATCH_P99_MS:g} ms: {verdict(ok_b)}"
            f"   (p50 = {r.dispatch.p50 / f.spawn.p50:.1f}× floor; peer ≈ {PEER_DISPATCH_MS:g} ms)"
        )
        print(
            f"  beside the paced floor: p50 = {r.dispatch.p50 / f.spawn_paced.p50:.1f}×"
            f" ({DISPATCH_FLOOR_X:g}× is {DISPATCH_FLOOR_X * f.spawn_paced.p50:.2f} ms)"
        )
    if "transcript" in args.phases:
        print(f"(c) transcript, one line every {PACE_SECONDS * 1000:g} ms")
        print(r.transcript.line())
        cpu = r.transcript_cpu
        print(
            f"  CPU per line: server {cpu.server:.2f} ms, daemon {cpu.daemon:.2f} ms,"
            f" subscriber {cpu.subscriber:.2f} ms"
        )
        ok_c = (
            r.transcript.p50 <= TRANSCRIPT_FLOOR_X * f.hop.p50
            and r.transcript.p50 < TRANSCRIPT_MAX_MS
            and r.transcript.p99 < TRANSCRIPT_P99_MS
        )
        print(
            f"  target: p50 ≤ {TRANSCRIPT_FLOOR_X:g}× one hop ({TRANSCRIPT_FLOOR_X * f.hop.p50:.2f} ms)"
            f" and < {TRANSCRIPT_MAX_MS:g} ms, p99 < {TRANSCRIPT_P99_MS:g} ms: {verdict(ok_c)}"
            f"   (p50 = {r.transcript.p50 / f.hop.p50:.1f}× one hop; peer ≈ {PEER_TRANSCRIPT_MS:g} ms)"
        )
        print(
            f"  beside the paced hop: p50 = {r.transcript.p50 / f.hop_paced.p50:.1f}×"
            f" ({TRANSCRIPT_FLOOR_X:g}× is {TRANSCRIPT_FLOOR_X * f.hop_paced.p50:.2f} ms)"
        )
    if "throughput" in args.phases:
        print(
            f"(d) throughput: {args.runs} no-op runs, {args.agents} agents × concurrency"
            f" {args.concurrency}, machine max_concurrency {args.capacity}, {args.parallel} clients"
        )
        d = r.throughput
        print(
            f"  {d.runs_per_s:.0f} runs/s end to end (assignments accepted at {d.assign_per_s:.0f}/s),"
            f" {d.failed} failed; target ≥ {TARGET_RUNS_PER_S:g}:"
            f" {verdict(d.runs_per_s >= TARGET_RUNS_PER_S and not d.failed)}"
        )
        for gap in d.gaps:
            print(gap.line())
        # What the target asks of this box's CPUs, at the CPU per run measured in this phase.
        parts = ", ".join(f"{name} {ms:.1f}" for name, ms in d.cpu_ms.items())
        total = sum(ms for ms in d.cpu_ms.values() if not math.isnan(ms))
        print(f"  CPU per run, ms: {parts}; {total:.1f} in all")
        print(
            f"  at {TARGET_RUNS_PER_S:g} runs/s that is {total * TARGET_RUNS_PER_S / 1000:.1f} CPUs"
            f" busy (this box has {os.cpu_count()}); without the server's share,"
            f" {(total - d.cpu_ms.get('server', 0)) * TARGET_RUNS_PER_S / 1000:.1f}"
        )


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="latency samples per measure")
    parser.add_argument("--lines", type=int, default=150, help="timed transcript lines")
    parser.add_argument("--runs", type=int, default=500, help="runs in the throughput test")
    parser.add_argument("--capacity", type=int, default=64, help="the machine's max_concurrency")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64, help="each agent's limit")
    parser.add_argument("--parallel", type=int, default=16, help="clients assigning at once")
    parser.add_argument("--backends", default="sqlite", help="sqlite,postgres")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="which of dispatch,transcript,throughput to run"
    )
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if any(p not in PHASES for p in args.phases):
        parser.error(f"--phases takes {', '.join(PHASES)} (the floors always run)")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in BACKENDS for b in backends):
        parser.error(f"--backends takes {', '.join(BACKENDS)}")
    if min(args.samples, args.lines, args.runs, args.capacity, args.agents) < 1:
        parser.error("counts must be positive")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64 (an agent's limit)")
    print(
        f"bench/dispatch.py: loopback only; databases {', '.join(backends)}; "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    results = []
    for backend in backends:
        result = await bench_backend(backend, args)
        report(result, args)
        results.append(result)
    first = results[0]
    print(
        json.dumps(
            {
                "hop_p50_ms": _figure(first.floors.hop.p50, 3),
                "floor_p50_ms": _figure(first.floors.spawn.p50, 3),
                "dispatch_p50_ms": _figure(first.dispatch.p50, 3),
                "dispatch_p99_ms": _figure(first.dispatch.p99, 3),
                "transcript_p50_ms": _figure(first.transcript.p50, 3),
                "transcript_p99_ms": _figure(first.transcript.p99, 3),
                "transcript_cpu_ms_per_line": _figure(first.transcript_cpu.server, 3),
                "daemon_cpu_ms_per_line": _figure(first.transcript_cpu.daemon, 3),
                "subscriber_cpu_ms_per_line": _figure(first.transcript_cpu.subscriber, 3),
                "hop_paced_p50_ms": _figure(first.floors.hop_paced.p50, 3),
                "floor_paced_p50_ms": _figure(first.floors.spawn_paced.p50, 3),
                "runs_per_s": _figure(first.throughput.runs_per_s, 1),
                "run_cpu_ms": _figure(sum(first.throughput.cpu_ms.values(), 0.0), 1),
                "database": first.backend,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
