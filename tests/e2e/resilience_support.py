"""The whole system, made to fail on purpose: a server that can be stopped and started again on
the same database, vhost and port; a real daemon (in this process, or `tama daemon` as a child
process that can be SIGKILLed); its AMQP optionally through a TCP proxy that can be taken down;
and a fake `claude` whose pace the test sets through files in a control folder.

The fake CLI answers the daemon's detection like the real one (`--version`, the initialize
request) and, in a run, says which start of the run it is and whether the worktree still holds
the file an earlier start wrote, then ticks every 0.2 s until the test creates `<control>/go`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import stat
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika

from taskmachine.daemon.approval import credentials_from
from taskmachine.daemon.config import MachineConfig, load_config, save_config
from taskmachine.daemon.daemon import Daemon
from taskmachine.dispatcher.broker_admin import BrokerAdmin
from taskmachine.dispatcher.service import Dispatcher
from taskmachine.schema.state import AppState
from taskmachine.server import ServerOptions
from taskmachine.settings import Settings
from taskmachine.wire import topology
from tests.conftest import RunningServer, start_server, stop_server
from tests.machine.proxy import BrokerProxy
from tests.machines.support import Owner, connect_machine, eventually, owner

CONTROL_ENV = "RESILIENCE_CONTROL"

FAKE_CLAUDE = r"""#!/bin/sh
# A claude-shaped CLI whose pace the test controls (see tests/e2e/resilience_support.py).
case " $* " in
  *" --version "*) echo "2.1.329 (Claude Code)"; exit 0 ;;
  *" --input-format "*)
    cat > /dev/null
    echo '{"type":"control_response","response":{"subtype":"success","request_id":"tama-detect-1","response":{"models":[{"value":"default","displayName":"Default","supportedEffortLevels":["low","high"]}]}}}'
    exit 0 ;;
esac
cat > /dev/null
ctl="${RESILIENCE_CONTROL:?}"
echo "$$" >> "$ctl/starts"
n=$(wc -l < "$ctl/starts" | tr -d ' ')
say() { printf '{"type":"assistant","message":{"content":[{"type":"text","text":"%s"}]}}\n' "$1"; }
printf '{"type":"system","subtype":"init","session_id":"resilience-%s"}\n' "$n"
if [ -e leftover.txt ]; then say "start $n: leftover from $(cat leftover.txt)"; else say "start $n: clean"; fi
echo "start $n" > leftover.txt
i=0
while [ ! -e "$ctl/go" ]; do
  say "tick $i"
  i=$((i + 1))
  sleep 0.2
  [ "$i" -ge 900 ] && exit 3
done
say "finished"
printf '{"type":"result","subtype":"success","session_id":"resilience-%s","result":"done","usage":{"input_tokens":1,"output_tokens":1}}\n' "$n"
touch "$ctl/exited-$n"
"""

RUNS = """query($w: ID!, $t: ID) { runs(workspaceId: $w, filter: {taskId: $t}) { edges { node {
  id status attempt failureCode error diffStat
  history { fromStatus toStatus reason attempt } } } } }"""
TRANSCRIPT = """query($r: ID!) { transcript(runId: $r, first: 200) { totalCount
  edges { node { attempt seq events } } } }"""
TIMELINE = "query($t: ID!) { timeline(taskId: $t, first: 200) { edges { node { kind data } } } }"


class Control:
    """The fake CLI's control folder: when to finish, and what it started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def go(self) -> None:
        (self.folder / "go").touch()

    def starts(self) -> list[int]:
        """The pids of every CLI start so far, in order."""
        path = self.folder / "starts"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def exited(self, start: int) -> bool:
        return (self.folder / f"exited-{start}").exists()

    def alive(self, pid: int) -> bool:
        """Is this pid still one of our fake CLIs (not a reused pid)?"""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"{CONTROL_ENV}={self.folder}".encode() in environ

    def kill_leftovers(self) -> None:
        for pid in self.starts():
            if self.alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


def write_fake_claude(folder: Path) -> Path:
    path = folder / "claude"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(FAKE_CLAUDE)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


async def _git(cwd: Path, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "git",
        "-c",
        "user.name=Test",
        "-c",
        "user.email=test@example.com",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 0, f"git {args[0]}: {err.decode()}"


async def make_repo(path: Path) -> Path:
    """A repository with one commit, for the workspace's worktrees."""
    await asyncio.to_thread(path.mkdir, parents=True)
    await _git(path, "init", "-q", "-b", "main")
    await asyncio.to_thread((path / "README.md").write_text, "resilience\n")
    await _git(path, "add", "README.md")
    await _git(path, "commit", "-q", "-m", "start")
    return path


class RelayDownDispatcher(Dispatcher):
    """A dispatcher whose outbox relay died: runs are dispatched and committed, never published
    (the server killed between commit and publish)."""

    async def start(self, state: AppState) -> None:
        await super().start(state)
        assert self.relay is not None and self.scheduler is not None
        await self.relay.stop()
        self.scheduler.relay = None  # nor does the scheduler publish what it dispatches


class IngestDownDispatcher(Dispatcher):
    """A dispatcher that does not read machines' events: they wait in the broker."""

    async def start(self, state: AppState) -> None:
        await super().start(state)
        assert self.ingest is not None and self.events is not None
        await self.events.stop()
        await self.ingest.stop()


async def start_server_on(
    settings: Settings, port: int, *, relay: bool = True, ingest: bool = True
) -> RunningServer:
    """tests.conftest.start_server with the dispatcher, on a given port (0: any free one)."""
    dispatcher = (
        Dispatcher()
        if relay and ingest
        else RelayDownDispatcher()
        if ingest
        else IngestDownDispatcher()
    )
    options = ServerOptions(migrate_on_start=False, components=[dispatcher])
    return await start_server(settings, options, port=port)


def with_port(amqp_url: str, port: int) -> str:
    parts = urlsplit(amqp_url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.hostname}:{port}", parts.path, "", ""))


# -- daemons -------------------------------------------------------------------------------------


class InProcessDaemon:
    """The real Daemon (and RunExecutor) as a task of the test's loop."""

    def __init__(self) -> None:
        self.daemon: Daemon | None = None
        self._task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        self.daemon = Daemon(load_config())
        self._task = asyncio.create_task(self.daemon.run(handle_signals=False))

    async def stop(self) -> None:
        if self.daemon is not None and self._task is not None:
            self.daemon.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=30)
        self.daemon = self._task = None


class ProcessDaemon:
    """`tama daemon` as a child process (TASKMACHINE_HOME from the environment); its log goes
    to a file, so a chatty daemon never blocks on a full pipe."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "taskmachine.cli",
                "daemon",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )

    async def kill(self) -> None:
        """SIGKILL: no drain, no final report, nothing flushed but what is already on disk."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.process = None

    async def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                await self.process.wait()
        except TimeoutError:
            await self.kill()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


DaemonHandle = InProcessDaemon | ProcessDaemon


# -- the rig -------------------------------------------------------------------------------------


@dataclass
class Rig:
    settings: Settings
    home: Path
    control: Control
    server: RunningServer | None
    port: int
    who: Owner
    machine_id: str
    creds: dict[str, Any]
    config: MachineConfig
    daemon: DaemonHandle
    proxy: BrokerProxy | None
    agent_id: str = ""
    extra_cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def api(self) -> RunningServer:
        assert self.server is not None, "the server is down"
        return self.server

    async def ok(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.api.ok(query, variables, self.who.token)

    # servers
    async def stop_server(self) -> None:
        if self.server is not None:
            await stop_server(self.server)
            self.server = None

    async def start_server(self, *, relay: bool = True, ingest: bool = True) -> None:
        assert self.server is None
        self.server = await start_server_on(self.settings, self.port, relay=relay, ingest=ingest)

    # work
    async def assign_new_task(self, title: str) -> str:
        data = await self.ok(
            "mutation($w: ID!, $t: String!) { createTask(input: {workspaceId: $w, title: $t}) { id } }",
            {"w": self.who.workspace_id, "t": title},
        )
        task_id = str(data["createTask"]["id"])
        await self.ok(
            "mutation($t: ID!, $a: ID!) { assignTask(input: {taskId: $t, agentId: $a}) { id } }",
            {"t": task_id, "a": self.agent_id},
        )
        return task_id

    async def runs(self, task_id: str) -> list[dict[str, Any]]:
        data = await self.ok(RUNS, {"w": self.who.workspace_id, "t": task_id})
        return [edge["node"] for edge in data["runs"]["edges"]]

    async def run(self, task_id: str) -> dict[str, Any]:
        runs = await self.runs(task_id)
        assert len(runs) == 1, f"expected one run, got {runs}"
        return runs[0]

    async def wait_run(
        self, task_id: str, check: Callable[[dict[str, Any]], bool], within: float = 30.0
    ) -> dict[str, Any]:
        async def matching() -> Any:
            run = await self.run(task_id)
            return run if check(run) else None

        try:
            return dict(await eventually(matching, within=within, every=0.1))
        except AssertionError:
            raise AssertionError(
                f"run of task {task_id} not as expected within {within}s: {await self.run(task_id)}"
            ) from None

    async def transcript(self, run_id: str) -> list[dict[str, Any]]:
        data = await self.ok(TRANSCRIPT, {"r": run_id})
        nodes = [edge["node"] for edge in data["transcript"]["edges"]]
        # (totalCount is counted apart from the page, so it may already include a newer chunk.)
        assert len(nodes) < 200, "more than one page of transcript"
        return nodes

    async def run_statuses_on_timeline(self, task_id: str) -> list[str]:
        data = await self.ok(TIMELINE, {"t": task_id})
        return [
            str(e["node"]["data"]["status"])
            for e in data["timeline"]["edges"]
            if e["node"]["kind"] == "RUN"
        ]

    async def jobs_waiting(self) -> int:
        """Messages ready in this machine's jobs queue (exact, unlike the management stats)."""
        connection = await aio_pika.connect(self.settings.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(topology.jobs_queue(self.machine_id), passive=True)
            result = queue.declaration_result
            return int(result.message_count or 0)

    def spool_events(self) -> list[tuple[str, int, int, str]]:
        """(run_id, attempt, seq, kind) of what the daemon's spool still holds unconfirmed."""
        path = self.config.state_dir / "spool.db"
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            rows = db.execute(
                "SELECT run_id, attempt, seq, kind FROM events ORDER BY id"
            ).fetchall()
        return [(str(r[0]), int(r[1]), int(r[2]), str(r[3])) for r in rows]

    async def close(self) -> None:
        self.control.go()
        await self.daemon.stop()
        self.control.kill_leftovers()
        await self.stop_server()
        if self.proxy is not None:
            await self.proxy.down()
        for cleanup in self.extra_cleanup:
            with contextlib.suppress(Exception):
                await cleanup()
        async with BrokerAdmin(self.settings.rabbitmq_management_url) as admin:
            await admin.remove_machine_user(self.machine_id)


async def build_rig(
    settings: Settings,
    tmp_path: Path,
    *,
    process_daemon: bool = False,
    via_proxy: bool = False,
    relay: bool = True,
) -> Rig:
    """Server + connected machine (approval flow) + running daemon + an agent on the fake claude,
    its workspace bound to a git repository so runs work in worktrees. TASKMACHINE_HOME and
    RESILIENCE_CONTROL must already point into tmp_path (the caller's monkeypatch)."""
    home = Path(os.environ["TASKMACHINE_HOME"])
    control = Control(Path(os.environ[CONTROL_ENV]))
    fake = write_fake_claude(tmp_path / "fakebin")
    server = await start_server_on(settings, 0, relay=relay)
    # Jobs tell the run's `tama` where the API is; restarts reuse the port, so the URL holds.
    settings.__dict__["public_url"] = server.url
    port = int(server.url.rsplit(":", 1)[1])
    who = await owner(server)
    creds = await connect_machine(server, who, "resilience-box")
    proxy: BrokerProxy | None = None
    amqp_url = str(creds["amqpUrl"])
    if via_proxy:
        parts = urlsplit(amqp_url)
        proxy = BrokerProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
        await proxy.up()
        amqp_url = with_port(amqp_url, proxy.port)
    repo = await make_repo(tmp_path / "repo")
    config = credentials_from({**creds, "amqpUrl": amqp_url}).apply_to(
        MachineConfig(
            execution_root=home / "work",
            state_dir=home / "state",
            runtime_paths={"claude": fake},
            workspace_repos={uuid.UUID(who.workspace_id): repo},
            heartbeat_interval_seconds=0.5,
            max_concurrency=2,
        ),
        server.url,
    )
    save_config(config)
    daemon: DaemonHandle = (
        ProcessDaemon(tmp_path / "daemon.log") if process_daemon else InProcessDaemon()
    )
    rig = Rig(
        settings,
        home,
        control,
        server,
        port,
        who,
        str(creds["machineId"]),
        creds,
        config,
        daemon,
        proxy,
    )
    try:
        await daemon.start()

        async def runtime_id() -> Any:
            data = await rig.ok(
                "query($w: ID!) { runtimes(workspaceId: $w) { id name available } }",
                {"w": who.workspace_id},
            )
            found = [r for r in data["runtimes"] if r["name"] == "claude" and r["available"]]
            return found and found[0]["id"]

        rid = await eventually(runtime_id, within=30)
        await rig.ok(
            "mutation($r: ID!) { setRuntimeEnabled(runtimeId: $r, enabled: true) { id } }",
            {"r": rid},
        )
        created = await rig.ok(
            'mutation($w: ID!, $r: ID!) { createAgent(workspaceId: $w, profile: {name: "Coder", defaultRuntimeId: $r}) { id } }',
            {"w": who.workspace_id, "r": rid},
        )
        rig.agent_id = str(created["createAgent"]["id"])
    except BaseException:
        await rig.close()
        raise
    return rig


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for a condition of this process's own making (files, pids) to hold."""

    async def holds() -> bool:
        return check()

    await eventually(holds, within=within)


def texts(chunks: list[dict[str, Any]], attempt: int) -> list[str]:
    """The text lines of one attempt's transcript, in seq order."""
    ordered = sorted((c for c in chunks if c["attempt"] == attempt), key=lambda c: c["seq"])
    return [str(e["text"]) for c in ordered for e in c["events"] if e.get("kind") == "text"]


def assert_complete_transcript(chunks: list[dict[str, Any]], attempt: int, start: int) -> list[str]:
    """One attempt's transcript arrived whole, in order, once: seqs 1..n without gap or repeat,
    and the CLI's lines from its first to "finished" with every tick in between."""
    seqs = [c["seq"] for c in chunks if c["attempt"] == attempt]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), (
        f"seqs of attempt {attempt}: {sorted(seqs)}"
    )
    lines = texts(chunks, attempt)
    assert lines[0].startswith(f"start {start}:"), lines[:3]
    assert lines[-1] == "finished", lines[-3:]
    ticks = lines[1:-1]
    assert ticks == [f"tick {i}" for i in range(len(ticks))], (
        f"ticks out of order or missing: {ticks}"
    )
    return lines


def history_moves(run: dict[str, Any]) -> list[tuple[str | None, str, int]]:
    return [(h["fromStatus"], h["toStatus"], h["attempt"]) for h in run["history"]]


def spool_has_finished(rig: Rig, run_id: str) -> bool:
    return any(r == run_id and kind == "finished" for r, _, _, kind in rig.spool_events())


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)
