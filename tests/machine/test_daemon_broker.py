"""The daemon in this process against the real broker: heartbeats, reconnects, control queue."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractConnection

import taskmachine
from taskmachine.daemon import exit_codes
from taskmachine.daemon.config import MachineConfig
from taskmachine.daemon.daemon import Daemon
from taskmachine.dispatcher.broker_admin import BrokerAdmin
from taskmachine.wire.topology import CONTROL_EXCHANGE, DEAD_QUEUE, machine_routing_key
from tests.daemon.support import REAL_CLIS
from tests.machine.conftest import BROKER_HOST, BROKER_PORT, MakeMachine, eventually
from tests.machine.proxy import BrokerProxy

Started = Callable[[MachineConfig], Awaitable[tuple[Daemon, "asyncio.Task[int]"]]]


@pytest.fixture
async def start_daemon() -> AsyncIterator[Started]:
    """Run daemons as tasks of this loop; any still running at the end is stopped (and must)."""
    running: list[tuple[Daemon, asyncio.Task[int]]] = []

    async def start(cfg: MachineConfig) -> tuple[Daemon, asyncio.Task[int]]:
        daemon = Daemon(cfg)
        task = asyncio.create_task(daemon.run(handle_signals=False))
        running.append((daemon, task))
        return daemon, task

    yield start
    for daemon, task in running:
        daemon.request_stop()
        async with asyncio.timeout(10):
            await task


def _gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_heartbeats_every_interval_carrying_the_machine_state(
    make_machine: MakeMachine, start_daemon: Started, tmp_path: Path
) -> None:
    machine = await make_machine()
    cfg = machine.save(
        runtime_paths={"claude": REAL_CLIS / "claude", "codex": tmp_path / "bin" / "codex"},
        max_concurrency=3,
        execution_root=tmp_path / "work",
    )
    assert os.access(REAL_CLIS / "claude", os.X_OK), "run scripts/install-clis"
    daemon, task = await start_daemon(cfg)

    beats = await machine.wait_beats(12)
    first = beats[0]
    assert first.machine_id == machine.id
    assert first.cli_version == taskmachine.__version__
    assert first.execution_root == str(tmp_path / "work")
    assert first.capacity == 3
    assert first.active_runs == []
    assert first.update_status is None
    assert [beat.seq for beat in beats] == list(range(len(beats)))
    # The first beat waits one interval at most for the first detection (a real probe of
    # claude takes longer than 0.2 s); later beats carry it.
    # Only beats where the list is news carry it (the others carry its digest).
    await eventually(lambda: any(beat.runtimes for beat in machine.beats()))
    listed = [beat for beat in machine.beats() if beat.runtimes]
    assert all(beat.runtimes_digest for beat in machine.beats())
    claude, codex = listed[0].runtimes or []
    assert (claude.name, claude.available, claude.version) == ("claude", True, "2.1.329")
    assert claude.models, "the real claude lists its models"
    assert (codex.name, codex.available) == ("codex", False)
    assert "does not exist" in (codex.reason or "")

    # Sent as the machine's broker user, as JSON.
    _, message = machine.received[0]
    assert message.user_id == machine.username
    assert message.content_type == "application/json"
    assert message.routing_key == f"machine.{machine.id}.heartbeat"

    # Every 0.2 s (±5 % jitter) by the daemon's clock, and at that rate where the server
    # receives them (single arrivals may lag on a busy machine; the cadence does not drift).
    sent = [beat.sent_at.timestamp() for beat in beats[1:12]]
    assert all(0.15 < gap < 0.27 for gap in _gaps(sent)), _gaps(sent)
    arrived = [at for at, _ in machine.received[1:12]]
    assert 0.17 < (arrived[-1] - arrived[0]) / 10 < 0.24, _gaps(arrived)

    # Detection is refreshed every cycle: a tool installed now shows up in a later heartbeat.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "codex").symlink_to(REAL_CLIS / "codex")
    # (Beats in between carry only the unchanged list's digest: runtimes is None.)
    found = await machine.wait_for(
        lambda beat: beat.runtimes is not None and beat.runtimes[1].available, within=20
    )
    assert found.runtimes is not None and found.runtimes[1].version == "0.169.0"

    daemon.request_stop()
    async with asyncio.timeout(5):
        assert await task == exit_codes.OK
    stopped_at = len(machine.received)
    await asyncio.sleep(0.5)
    assert len(machine.received) == stopped_at, "heartbeats went on after the stop"


async def test_a_slow_detection_does_not_delay_heartbeats(
    make_machine: MakeMachine, start_daemon: Started, tmp_path: Path
) -> None:
    machine = await make_machine()
    slow = tmp_path / "claude"
    # A tool whose every probe takes 3 s: the heartbeat must keep its 0.2 s cadence meanwhile.
    slow.write_text("#!/bin/sh\nsleep 3\necho '2.1.0 (Claude Code)'\n")
    slow.chmod(0o755)
    cfg = machine.save(runtime_paths={"claude": slow, "codex": tmp_path / "none"})
    await start_daemon(cfg)
    await machine.wait_beats(10, within=5)
    sent = [beat.sent_at.timestamp() for beat in machine.beats()[:10]]
    # The first beat waited one interval for detection at most, then beats came on time
    # while the probe was still running.
    gaps = _gaps(sent)
    # A beat held back by detection would leave a gap of about the 3 s hang; on a loaded
    # machine one gap may stretch a little, but none comes near that, and the cadence holds.
    assert max(gaps) < 1.5, gaps
    assert 0.15 < statistics.median(gaps) < 0.3, gaps
    assert machine.beats()[0].runtimes == []


async def test_heartbeats_resume_after_the_broker_closes_the_connection(
    make_machine: MakeMachine,
    start_daemon: Started,
    broker_admin: BrokerAdmin,
    management: httpx.AsyncClient,
) -> None:
    machine = await make_machine()
    daemon, task = await start_daemon(machine.save())
    await machine.wait_beats(3)
    # What an operator (or a broker restart) does: close the machine's connection.

    async def listed() -> bool:
        return bool(await broker_admin.machine_connections(str(machine.id)))

    await eventually(listed)
    response = await management.delete(f"/connections/username/{machine.username}")
    assert response.status_code == 204, response.text
    await eventually(lambda: daemon.session.connections_made >= 2)
    before = len(machine.received)
    await machine.wait_beats(before + 5)
    assert not task.done()


async def test_a_broker_that_goes_away_and_comes_back(
    make_machine: MakeMachine, start_daemon: Started
) -> None:
    machine = await make_machine()
    proxy = BrokerProxy(BROKER_HOST, BROKER_PORT)
    await proxy.up()
    try:
        daemon, task = await start_daemon(machine.save(amqp_url=machine.url(port=proxy.port)))
        await machine.wait_beats(3)
        await proxy.down()
        await asyncio.sleep(0.3)
        gone_at = len(machine.received)
        # Down for a while: the daemon keeps running, tries again, and sends nothing.
        await asyncio.sleep(2.0)
        assert not task.done()
        assert len(machine.received) <= gone_at + 1
        await proxy.up()
        beats = await machine.wait_beats(gone_at + 5, within=40)
        assert daemon.session.connections_made == 2
        # One daemon process: its sequence numbers keep counting up across the reconnect.
        seqs = [beat.seq for beat in beats]
        assert seqs == sorted(seqs)
    finally:
        await proxy.down()


async def test_a_removed_machine_stops_with_a_clear_message(
    make_machine: MakeMachine, start_daemon: Started, broker_admin: BrokerAdmin
) -> None:
    machine = await make_machine()
    daemon, task = await start_daemon(machine.save())
    await machine.wait_beats(2)
    await broker_admin.remove_machine_user(str(machine.id))
    async with asyncio.timeout(20):
        code = await task
    assert code == exit_codes.CREDENTIALS_REFUSED
    assert f"refused machine-{machine.id}" in daemon.exit_message
    assert "run `tama setup` again" in daemon.exit_message


async def test_a_malformed_control_message_is_dead_lettered_and_the_daemon_goes_on(
    make_machine: MakeMachine,
    start_daemon: Started,
    admin_connection: AbstractConnection,
) -> None:
    machine = await make_machine()
    daemon, task = await start_daemon(machine.save())
    await machine.wait_beats(2)
    async with admin_connection.channel() as channel:
        dead = await channel.declare_queue(DEAD_QUEUE, passive=True)
        await dead.purge()
        exchange = await channel.get_exchange(CONTROL_EXCHANGE)
        for body in (b"not json", json.dumps({"kind": "explode", "v": 1}).encode()):
            await exchange.publish(
                aio_pika.Message(body), routing_key=machine_routing_key(str(machine.id))
            )
        got: list[bytes] = []
        async with asyncio.timeout(10):
            while len(got) < 2:
                message = await dead.get(fail=False, no_ack=True)
                if message is None:
                    await asyncio.sleep(0.05)
                else:
                    got.append(message.body)
    assert sorted(got) == sorted([b"not json", b'{"kind": "explode", "v": 1}'])
    assert daemon.control.rejected == 2
    before = len(machine.received)
    await machine.wait_beats(before + 3)
    assert not task.done()
