"""Nothing lost, nothing twice: run events wait in the spool while the broker is out of reach,
and a daemon killed with SIGKILL mid-run reports what it left behind when it starts again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from taskmachine.wire.runs import RunFinished, RunOutput
from tests.executor.conftest import (
    BROKER_HOST,
    BROKER_PORT,
    EventLog,
    Machine,
    MakeHarness,
    Publish,
    RunEvent,
    adapter_for,
    fake_cli,
    make_job,
    minimal_env,
    texts,
)
from tests.machine.proxy import BrokerProxy

REPO = Path(__file__).resolve().parents[2]


def _deduplicated(events: list[RunEvent]) -> list[RunEvent]:
    """The events as the server applies them: the first of each seq, in arrival order."""
    seen: set[int] = set()
    kept = []
    for event in events:
        if event.seq not in seen:
            seen.add(event.seq)
            kept.append(event)
    return kept


async def test_events_wait_in_the_spool_while_the_broker_is_away_then_arrive_in_order(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    proxy = BrokerProxy(BROKER_HOST, BROKER_PORT)
    await proxy.up()
    env = minimal_env(tmp_path, FAKE_STEPS="16", FAKE_PAUSE="0.1")
    harness = await make_harness(
        connect=False, env=env, adapter_factory=adapter_for(fake_cli(tmp_path, "claude_steps.sh"))
    )
    await harness.connect(port=proxy.port)
    job = make_job()
    try:
        await publish_job(job)
        await event_log.wait_for(lambda: len(event_log.of(job.run_id)) >= 3)
        await proxy.down()
        seen_before = len(event_log.of(job.run_id))
        await asyncio.sleep(1.0)
        # The run went on; its events are in the spool, not lost and not sent.
        assert len(event_log.of(job.run_id)) == seen_before
        assert not await harness.executor.publisher.wait_sent(within=0.1)

        await proxy.up()
        await harness.connect(port=proxy.port)  # the daemon's reconnect
        finished = await event_log.finished(job.run_id)
        # Everything confirmed is gone from the spool.
        assert await harness.executor.publisher.wait_sent(within=2)
    finally:
        await proxy.down()

    assert finished.outcome == "succeeded"
    events = _deduplicated(event_log.of(job.run_id))
    assert [e.seq for e in events] == list(range(len(events)))
    assert texts(events) == [f"step {i}" for i in range(16)]


async def _start_child(options: dict[str, object]) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.executor.child_daemon",
        json.dumps(options),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdout is not None
    async with asyncio.timeout(20):
        assert (await child.stdout.readline()).strip() == b"ready"
    return child


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


async def test_a_daemon_killed_mid_run_replays_its_spool_and_reports_the_run_on_restart(
    tmp_path: Path, machine: Machine, publish_job: Publish, event_log: EventLog
) -> None:
    proxy = BrokerProxy(BROKER_HOST, BROKER_PORT)
    await proxy.up()
    pids = tmp_path / "pids"
    options: dict[str, object] = {
        "amqp_url": machine.url(proxy.port),
        "machine_id": machine.id,
        "execution_root": str(tmp_path / "work"),
        "state_dir": str(tmp_path / "state"),
        "fake_cli": str(fake_cli(tmp_path, "claude_then_sleep.sh")),
        "env": minimal_env(tmp_path, FAKE_STEPS="8", FAKE_PAUSE="0.1", FAKE_PIDS=str(pids)),
    }
    job = make_job()
    first = await _start_child(options)
    second = None
    try:
        await publish_job(job)
        await event_log.wait_for(lambda: len(event_log.of(job.run_id)) >= 2)
        # The broker goes out of reach; the run's next steps go to the spool only.
        await proxy.down()
        await asyncio.sleep(1.2)
        delivered_before = len(event_log.of(job.run_id))
        first.send_signal(signal.SIGKILL)
        await first.wait()
        [cli_pid] = map(int, pids.read_text().split())
        assert _alive(cli_pid), "the CLI outlives its daemon (it has its own session)"

        await proxy.up()
        second = await _start_child({**options, "amqp_url": machine.url()})
        finished = await event_log.finished(job.run_id)
    finally:
        await proxy.down()
        for child in (first, second):
            if child is not None and child.returncode is None:
                child.kill()
                await child.wait()

    events = _deduplicated(event_log.of(job.run_id))
    assert len(events) > delivered_before
    assert [e.seq for e in events] == list(range(len(events)))
    assert texts(events) == [f"step {i}" for i in range(8)]
    assert isinstance(events[-1], RunFinished) and events[-1] == finished
    assert finished.outcome == "failed" and finished.failure_code == "daemon_restart"
    assert sum(isinstance(e, RunOutput) for e in events) >= 2
    # The restarted daemon ended what the dead one left running.
    async with asyncio.timeout(5):
        while _alive(cli_pid):  # noqa: ASYNC110 - a process's end is not an event we can await
            await asyncio.sleep(0.05)
