"""Taking jobs from the machine's queue: claims, duplicates, bad messages, priority with
prefetch = free slots, concurrency, cancellation and draining — against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractConnection

from taskmachine.wire.runs import RunFinished, RunStarted
from taskmachine.wire.topology import DEAD_QUEUE, jobs_queue
from tests.executor.conftest import (
    EventLog,
    MakeHarness,
    Publish,
    StubClaimer,
    adapter_for,
    fake_cli,
    make_job,
    minimal_env,
    seqs,
)


async def _queue_depth(admin: AbstractConnection, name: str) -> int:
    async with admin.channel() as channel:
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        return int(count or 0)


async def test_a_duplicate_delivery_is_dropped_without_a_second_claim_or_run(
    tmp_path: Path,
    make_harness: MakeHarness,
    publish_job: Publish,
    event_log: EventLog,
    admin_connection: AbstractConnection,
) -> None:
    harness = await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_ok.sh")))
    job = make_job()

    await publish_job(job)
    await event_log.finished(job.run_id)
    await publish_job(job)  # the same attempt again, as a broker redelivery would bring it
    await asyncio.sleep(0.5)

    assert harness.claimer.calls == [(job.run_id, 1)]
    assert [type(e) for e in event_log.of(job.run_id)].count(RunStarted) == 1
    assert await _queue_depth(admin_connection, jobs_queue(harness.machine.id)) == 0


async def test_a_refused_claim_is_acked_and_dropped(
    tmp_path: Path,
    make_harness: MakeHarness,
    publish_job: Publish,
    event_log: EventLog,
    admin_connection: AbstractConnection,
) -> None:
    claimer = StubClaimer()
    harness = await make_harness(
        claimer=claimer, adapter_factory=adapter_for(fake_cli(tmp_path, "claude_ok.sh"))
    )
    refused, accepted = make_job(), make_job()
    claimer.refuse.add(refused.run_id)

    await publish_job(refused)
    await publish_job(accepted)
    await event_log.finished(accepted.run_id)

    assert (refused.run_id, 1) in claimer.calls
    assert event_log.of(refused.run_id) == []
    assert await _queue_depth(admin_connection, jobs_queue(harness.machine.id)) == 0
    # A new attempt of the same run is a new claim.
    retry = refused.model_copy(update={"attempt": 2})
    claimer.refuse.clear()
    await publish_job(retry)
    assert (await event_log.finished(refused.run_id)).attempt == 2


async def test_a_claim_that_cannot_be_made_now_is_requeued_and_tried_again(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    claimer = StubClaimer()
    claimer.unavailable = 2
    await make_harness(
        claimer=claimer, adapter_factory=adapter_for(fake_cli(tmp_path, "claude_ok.sh"))
    )
    job = make_job()

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "succeeded"
    assert claimer.calls == [(job.run_id, 1)] * 3


async def test_a_malformed_job_is_dead_lettered_and_the_next_one_runs(
    tmp_path: Path,
    make_harness: MakeHarness,
    publish_job: Publish,
    event_log: EventLog,
    admin_connection: AbstractConnection,
) -> None:
    harness = await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_ok.sh")))
    async with admin_connection.channel() as channel:
        dead = await channel.declare_queue(DEAD_QUEUE, passive=True)
        await dead.purge()
    marker = uuid.uuid4().hex
    job = make_job()

    await publish_job(f'{{"v": 1, "run_id": "not a uuid", "marker": "{marker}"}}'.encode())
    await publish_job(job)
    await event_log.finished(job.run_id)

    async with admin_connection.channel() as channel:
        dead = await channel.declare_queue(DEAD_QUEUE, passive=True)
        async with asyncio.timeout(5):
            # Dead-lettering is asynchronous, and nothing announces it: poll.
            while (message := await dead.get(fail=False)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert marker.encode() in message.body
        deaths: Any = message.headers["x-death"]
        assert deaths[0]["queue"] == jobs_queue(harness.machine.id)
    assert harness.claimer.calls == [(job.run_id, 1)]


async def test_a_high_priority_job_overtakes_waiting_low_priority_ones(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    env = minimal_env(tmp_path, FAKE_SLEEP="0.6")
    harness = await make_harness(
        capacity=1, env=env, adapter_factory=adapter_for(fake_cli(tmp_path, "claude_ok.sh"))
    )
    low1, low2, high = make_job(prompt="low1"), make_job(prompt="low2"), make_job(prompt="high")

    await publish_job(low1, priority=1)
    await event_log.started(low1.run_id)
    await publish_job(low2, priority=1)
    await publish_job(high, priority=9)
    for job in (low1, low2, high):
        await event_log.finished(job.run_id)

    order = [f.run_id for f in harness.executor.finished]
    assert order == [low1.run_id, high.run_id, low2.run_id]
    # Capacity 1: one run at a time, so each started after the previous finished.
    starts = {
        e.run_id: e.sent_at
        for _, e in event_log.events
        if isinstance(e, RunStarted) and e.run_id in order
    }
    ends = {f.run_id: f.sent_at for f in harness.executor.finished}
    assert starts[high.run_id] >= ends[low1.run_id]
    assert starts[low2.run_id] >= ends[high.run_id]


async def test_runs_execute_concurrently_up_to_capacity(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    env = minimal_env(tmp_path, FAKE_SLEEP="0.8")
    harness = await make_harness(
        capacity=2, env=env, adapter_factory=adapter_for(fake_cli(tmp_path, "claude_ok.sh"))
    )
    jobs = [make_job(prompt=f"job{i}") for i in range(3)]

    for job in jobs:
        await publish_job(job)
    await event_log.started(jobs[1].run_id)
    await asyncio.sleep(0.2)

    # Two running (their leases renewed by heartbeats), the third waits in the broker.
    active = {(a.run_id, a.attempt) for a in harness.executor.active_runs()}
    assert active == {(jobs[0].run_id, 1), (jobs[1].run_id, 1)}
    assert harness.executor.capacity == 2 and harness.executor.free_slots == 0
    assert event_log.of(jobs[2].run_id) == []
    for job in jobs:
        assert (await event_log.finished(job.run_id)).outcome == "succeeded"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


async def test_cancel_sigterms_then_sigkills_the_whole_process_group(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    pids = tmp_path / "pids"
    env = minimal_env(tmp_path, FAKE_PIDS=str(pids))
    harness = await make_harness(
        env=env, adapter_factory=adapter_for(fake_cli(tmp_path, "claude_stubborn.sh"))
    )
    job = make_job(grace=0.7)

    await publish_job(job)
    await event_log.wait_for(lambda: len(event_log.of(job.run_id)) >= 2)
    await event_log.wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    began = time.monotonic()
    assert await harness.executor.cancel(job.run_id, 1)
    finished = await event_log.finished(job.run_id)
    took = time.monotonic() - began

    assert finished.outcome == "cancelled"
    assert finished.exit_code == -9  # it ignored SIGTERM, so SIGKILL ended it
    assert 0.7 <= took < 3, took
    assert not [pid for pid in map(int, pids.read_text().split()) if _alive(pid)]
    assert not await harness.executor.cancel(job.run_id, 1)


async def test_cancel_of_a_cooperative_run_is_quick(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    harness = await make_harness(
        adapter_factory=adapter_for(fake_cli(tmp_path, "claude_silent.sh"))
    )
    job = make_job(grace=10)

    await publish_job(job)
    await event_log.wait_for(lambda: len(event_log.of(job.run_id)) >= 2)
    began = time.monotonic()
    await harness.executor.cancel(job.run_id, 1)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "cancelled"
    assert finished.exit_code == -15
    assert time.monotonic() - began < 2
    assert seqs(event_log.of(job.run_id)) == list(range(len(event_log.of(job.run_id))))


async def test_drain_lets_runs_finish_then_stops_the_rest(
    tmp_path: Path,
    make_harness: MakeHarness,
    publish_job: Publish,
    event_log: EventLog,
    admin_connection: AbstractConnection,
) -> None:
    env = minimal_env(tmp_path, FAKE_SLEEP="0.3")
    ok = fake_cli(tmp_path, "claude_ok.sh")
    silent = fake_cli(tmp_path, "claude_silent.sh", "codex")

    def factory(runtime: str):  # type: ignore[no-untyped-def]
        return adapter_for(silent if runtime == "codex" else ok)(runtime)

    harness = await make_harness(capacity=2, env=env, adapter_factory=factory)
    quick, stuck, waiting = make_job(), make_job(runtime="codex"), make_job()

    await publish_job(quick)
    await publish_job(stuck)
    await event_log.started(stuck.run_id)
    await event_log.started(quick.run_id)
    await publish_job(waiting)
    await harness.executor.drain(timeout=1.0)

    assert (await event_log.finished(quick.run_id)).outcome == "succeeded"
    stopped = await event_log.finished(stuck.run_id)
    assert stopped.outcome == "failed" and stopped.failure_code == "daemon_stopped"
    # The job that had not started stays in the queue for the next daemon.
    assert event_log.of(waiting.run_id) == []
    assert await _queue_depth(admin_connection, jobs_queue(harness.machine.id)) == 1
    assert all(isinstance(f, RunFinished) for f in harness.executor.finished)


async def test_after_a_drain_that_did_not_end_the_daemon_jobs_are_taken_again(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    harness = await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_ok.sh")))
    await harness.executor.drain(timeout=1)
    job = make_job()
    await publish_job(job)
    await asyncio.sleep(0.3)
    assert event_log.of(job.run_id) == []

    await harness.executor.resume()  # e.g. the update it drained for failed

    assert (await event_log.finished(job.run_id)).outcome == "succeeded"
