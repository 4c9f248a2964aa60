"""Resilience of the whole system (issue 4): the real server, RabbitMQ, database (SQLite and
PostgreSQL), daemon and executor, with a fake `claude` whose pace the test sets, taken through
server restarts, a server that died between commit and publish, broker outages, a SIGKILLed
daemon and malformed events. Nothing is lost, nothing happens twice, a run reported finished is
never retried, and a retry after a lost lease starts from a clean worktree.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from taskmachine.domain import runs as run_domain
from taskmachine.models import OutboxMessage, Run
from taskmachine.settings import Settings
from taskmachine.wire import topology
from tests.e2e.resilience_support import (
    CONTROL_ENV,
    ProcessDaemon,
    Rig,
    assert_complete_transcript,
    build_rig,
    history_moves,
    spool_has_finished,
    texts,
    until,
)
from tests.machines.support import eventually

MakeRig = Callable[..., Awaitable[Rig]]

RUNNING = ("RUNNING", "CLAIMED")


@pytest.fixture
async def make_rig(
    broker_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeRig]:
    monkeypatch.setenv("TASKMACHINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(CONTROL_ENV, str(tmp_path / "control"))
    made: list[Rig] = []

    async def make(*, lease: float, claim_deadline: float = 30.0, **options: Any) -> Rig:
        settings = broker_settings.model_copy(
            update={"lease_seconds": lease, "claim_deadline_seconds": claim_deadline}
        )
        rig = await build_rig(settings, tmp_path, **options)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.close()


async def _ticking(rig: Rig, task_id: str, ticks: int = 2) -> dict[str, Any]:
    """Wait until the run is running and its transcript shows the CLI ticking."""
    run = await rig.wait_run(task_id, lambda r: r["status"] == "RUNNING")

    async def ticked() -> bool:
        lines = texts(await rig.transcript(run["id"]), run["attempt"])
        return sum(line.startswith("tick") for line in lines) >= ticks

    await eventually(ticked, within=20)
    return run


async def _spooled_count(rig: Rig, run: dict[str, Any]) -> int:
    return len(await rig.transcript(run["id"]))


async def test_server_restart_mid_run_loses_nothing_and_finishes_once(make_rig: MakeRig) -> None:
    rig = await make_rig(lease=8.0)
    task_id = await rig.assign_new_task("survive a server restart")
    run = await _ticking(rig, task_id)

    await rig.stop_server()
    # The CLI goes on while the server is away: its output and its finish wait in the broker.
    await asyncio.sleep(1.0)
    rig.control.go()
    await until(lambda: rig.control.exited(1), within=10)
    await asyncio.sleep(0.5)
    await rig.start_server()

    done = await rig.wait_run(task_id, lambda r: r["status"] not in RUNNING)
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 1, done
    assert history_moves(done) == [
        (None, "QUEUED", 1),
        ("QUEUED", "DISPATCHED", 1),
        ("DISPATCHED", "CLAIMED", 1),
        ("CLAIMED", "RUNNING", 1),
        ("RUNNING", "SUCCEEDED", 1),
    ]
    lines = assert_complete_transcript(await rig.transcript(run["id"]), 1, start=1)
    assert len(lines) >= 2 + 5, "ticks made while the server was down are in the transcript"
    assert await rig.run_statuses_on_timeline(task_id) == ["queued", "running", "succeeded"]
    assert len(rig.control.starts()) == 1


async def test_a_whole_run_made_while_the_server_was_away_is_applied_in_order(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=5.0)
    # The server's event ingest is down (the run's whole life happens while the server is away,
    # but for the claim): started, output and finished reach it later in one burst.
    await rig.stop_server()
    await rig.start_server(ingest=False)
    rig.control.go()
    task_id = await rig.assign_new_task("all at once")
    run = await rig.wait_run(task_id, lambda r: r["status"] == "CLAIMED")
    await until(lambda: rig.control.exited(1), within=10)
    await asyncio.sleep(0.5)
    assert (await rig.run(task_id))["status"] == "CLAIMED"
    await rig.stop_server()
    await rig.start_server()

    done = await rig.wait_run(task_id, lambda r: r["status"] not in RUNNING)
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 1, done
    assert_complete_transcript(await rig.transcript(run["id"]), 1, start=1)
    assert history_moves(done)[2:] == [
        ("DISPATCHED", "CLAIMED", 1),
        ("CLAIMED", "RUNNING", 1),
        ("RUNNING", "SUCCEEDED", 1),
    ]
    # Past the lease: a run reported finished stays finished (no lease loss, no retry).
    await asyncio.sleep(rig.settings.lease_seconds + 1)
    assert history_moves(await rig.run(task_id)) == history_moves(done)


async def test_a_job_committed_but_never_published_goes_out_after_restart_and_runs_once(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=8.0)
    # The daemon is away (the machine counts as online for a while), and the server's relay
    # died after the dispatch committed: the job sits in the outbox only.
    await rig.daemon.stop()
    await rig.stop_server()
    await rig.start_server(relay=False)
    task_id = await rig.assign_new_task("published late")
    run = await rig.wait_run(task_id, lambda r: r["status"] == "DISPATCHED")
    async with rig.api.state.session_factory() as session:
        (row,) = (
            await session.execute(
                OutboxMessage.__table__.select().where(OutboxMessage.run_id == uuid.UUID(run["id"]))
            )
        ).all()
        assert row.published_at is None
        # The same server also died after the broker confirmed a publish of this row but
        # before marking it: one copy is in the queue already, the row still says unpublished.
        stored = await session.get(Run, uuid.UUID(run["id"]))
        assert stored is not None
        job = json.loads(row.body)
        job["run_token"] = run_domain.run_token(rig.api.state.hasher, stored)
    assert await rig.jobs_waiting() == 0
    connection = await aio_pika.connect(rig.settings.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.JOBS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                json.dumps(job).encode(),
                priority=row.priority,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=row.routing_key,
            mandatory=True,
            timeout=10,
        )
    await rig.stop_server()

    # A normal server publishes the row again: two deliveries of one attempt.
    await rig.start_server()

    async def two_waiting() -> bool:
        return await rig.jobs_waiting() == 2

    await eventually(two_waiting, within=10)

    async def marked() -> bool:
        # Marks are written a moment after the publish, many rows at once (relay.MARK_DELAY).
        async with rig.api.state.session_factory() as session:
            published = await session.scalar(
                OutboxMessage.__table__.select()
                .with_only_columns(OutboxMessage.published_at)
                .where(OutboxMessage.run_id == uuid.UUID(run["id"]))
            )
        return published is not None

    await eventually(marked, within=10)
    rig.control.go()
    await rig.daemon.start()

    done = await rig.wait_run(task_id, lambda r: r["status"] not in (*RUNNING, "DISPATCHED"))
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 1, done
    await asyncio.sleep(1.0)  # time for the duplicate to be taken and dropped
    assert await rig.jobs_waiting() == 0
    assert len(rig.control.starts()) == 1, "the job ran once"
    assert [m for m in history_moves(await rig.run(task_id)) if m[1] == "CLAIMED"] == [
        ("DISPATCHED", "CLAIMED", 1)
    ]


async def test_short_broker_outage_for_the_daemon_keeps_the_lease_and_every_event(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=6.0, via_proxy=True)
    assert rig.proxy is not None
    task_id = await rig.assign_new_task("survive a network blip")
    run = await _ticking(rig, task_id)

    await rig.proxy.down()
    before = await _spooled_count(rig, run)
    await asyncio.sleep(1.5)
    assert await _spooled_count(rig, run) <= before + 1, "events got through a downed proxy"
    await rig.proxy.up()

    async def caught_up() -> bool:
        return await _spooled_count(rig, run) >= before + 7

    await eventually(caught_up, within=20)
    rig.control.go()
    done = await rig.wait_run(task_id, lambda r: r["status"] not in RUNNING)
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 1, done
    assert not any(m[1] == "QUEUED" and m[0] is not None for m in history_moves(done)), (
        "the lease held"
    )
    assert_complete_transcript(await rig.transcript(run["id"]), 1, start=1)
    assert len(rig.control.starts()) == 1


async def test_broker_outage_longer_than_the_lease_retries_once_from_a_clean_worktree(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=1.5, via_proxy=True)
    assert rig.proxy is not None
    task_id = await rig.assign_new_task("survive a long outage")
    run = await _ticking(rig, task_id)

    await rig.proxy.down()
    retried = await rig.wait_run(task_id, lambda r: r["attempt"] == 2, within=15)
    assert retried["status"] in ("QUEUED", "DISPATCHED"), retried
    # The first attempt ends while cut off; its late report is of an attempt given up on.
    rig.control.go()
    await until(lambda: rig.control.exited(1), within=10)
    await rig.proxy.up()

    done = await rig.wait_run(
        task_id, lambda r: r["status"] not in (*RUNNING, "QUEUED", "DISPATCHED"), within=40
    )
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 2, done
    moves = history_moves(done)
    assert ("RUNNING", "QUEUED", 1) in moves and moves.count(("RUNNING", "SUCCEEDED", 2)) == 1, (
        moves
    )
    retry = next(h for h in done["history"] if h["toStatus"] == "QUEUED" and h["fromStatus"])
    assert retry["reason"] == "retry after lease_lost"
    chunks = await rig.transcript(run["id"])
    second = assert_complete_transcript(chunks, 2, start=2)
    assert second[0] == "start 2: clean", "the retry starts from a clean worktree"
    assert len(rig.control.starts()) == 2
    assert "leftover.txt" in (done["diffStat"] or ""), done["diffStat"]


async def test_a_sigkilled_daemon_loses_its_lease_and_the_retry_runs_clean_after_restart(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=2.0, process_daemon=True)
    daemon = rig.daemon
    assert isinstance(daemon, ProcessDaemon)
    task_id = await rig.assign_new_task("survive kill -9")
    run = await _ticking(rig, task_id)
    (first_cli,) = rig.control.starts()

    await daemon.kill()
    retried = await rig.wait_run(
        task_id, lambda r: r["attempt"] == 2 and r["status"] == "DISPATCHED", within=15
    )
    assert retried["history"][-2]["reason"] == "retry after lease_lost"
    # The orphaned CLI dies on its next write to the dead daemon's pipe.
    await until(lambda: not rig.control.alive(first_cli), within=5)
    rig.control.go()
    await daemon.start()

    done = await rig.wait_run(task_id, lambda r: r["status"] == "SUCCEEDED", within=40)
    assert done["attempt"] == 2
    # The restarted daemon reported the killed attempt (`daemon_restart`); the server had moved
    # on to attempt 2 and ignored it: no failure, one retry, one success.
    log = daemon.log()
    assert f"run {run['id']} attempt 1 was in progress when the daemon stopped" in log, log[-3000:]
    moves = history_moves(done)
    assert [m for m in moves if m[1] in ("QUEUED", "FAILED", "SUCCEEDED")] == [
        (None, "QUEUED", 1),
        ("RUNNING", "QUEUED", 1),
        ("RUNNING", "SUCCEEDED", 2),
    ], moves
    chunks = await rig.transcript(run["id"])
    assert assert_complete_transcript(chunks, 2, start=2)[0] == "start 2: clean"
    assert done["failureCode"] is None


async def test_a_finished_report_survives_a_sigkill_before_it_was_confirmed_and_is_not_retried(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=10.0, process_daemon=True, via_proxy=True)
    assert rig.proxy is not None
    daemon = rig.daemon
    assert isinstance(daemon, ProcessDaemon)
    task_id = await rig.assign_new_task("finish while cut off, then die")
    run = await _ticking(rig, task_id)

    # The CLI finishes while the broker is unreachable: the report is only in the spool...
    await rig.proxy.down()
    rig.control.go()

    async def report_spooled() -> bool:
        return await asyncio.to_thread(spool_has_finished, rig, run["id"])

    await eventually(report_spooled, within=15)
    # ...when the daemon is killed.
    await daemon.kill()
    assert (await rig.run(task_id))["status"] == "RUNNING"
    await rig.proxy.up()
    await daemon.start()

    done = await rig.wait_run(task_id, lambda r: r["status"] not in RUNNING, within=30)
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 1, done
    await asyncio.sleep(1.0)
    done = await rig.run(task_id)
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 1
    assert [m for m in history_moves(done) if m[0] == "RUNNING"] == [("RUNNING", "SUCCEEDED", 1)]
    assert_complete_transcript(await rig.transcript(run["id"]), 1, start=1)
    assert len(rig.control.starts()) == 1
    assert "was in progress when the daemon stopped" not in daemon.log()


async def test_malformed_run_events_from_a_real_machine_are_dead_lettered_and_ingest_goes_on(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=8.0)
    task_id = await rig.assign_new_task("ignore junk")
    run = await _ticking(rig, task_id)
    broker = rig.api.state.services["broker"]
    dead = await broker.channel.declare_queue(
        topology.DEAD_QUEUE, durable=True, arguments=topology.queue_arguments("dead")
    )
    await dead.purge()
    run_hex = uuid.UUID(run["id"]).hex
    junk = [
        (b"{not json", "output"),
        (
            json.dumps(
                {
                    "v": 1,
                    "kind": "output",
                    "run_id": run["id"],
                    "attempt": 1,
                    "seq": -1,
                    "sent_at": "2026-01-01T00:00:00Z",
                    "events": [{"kind": "text", "text": "junk"}],
                }
            ).encode(),
            "output",
        ),
        (
            json.dumps(
                {
                    "v": 1,
                    "kind": "finished",
                    "run_id": str(uuid.uuid4()),
                    "attempt": 1,
                    "seq": 900,
                    "sent_at": "2026-01-01T00:00:00Z",
                    "outcome": "failed",
                }
            ).encode(),
            "finished",
        ),
    ]
    # Sent as the machine itself, with its own broker user, beside its real daemon.
    connection = await aio_pika.connect(rig.creds["amqpUrl"], timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        events = await topology.open_events_exchange(channel)
        for body, kind in junk:
            await events.publish(
                aio_pika.Message(
                    body,
                    user_id=topology.machine_username(rig.machine_id),
                    content_type="application/json",
                ),
                routing_key=topology.run_event_routing_key(rig.machine_id, run_hex, kind),
                timeout=5,
            )

    reasons: list[str] = []

    async def all_dead() -> bool:
        message = await dead.get(fail=False)
        if message is not None:
            reasons.append(message.headers["x-death"][0]["reason"])
            await message.ack()
        return len(reasons) >= len(junk)

    await eventually(all_dead, within=10)
    assert reasons == ["rejected"] * len(junk)
    rig.control.go()
    done = await rig.wait_run(task_id, lambda r: r["status"] not in RUNNING)
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 1, done
    lines = assert_complete_transcript(await rig.transcript(run["id"]), 1, start=1)
    assert "junk" not in lines
    assert await dead.get(fail=False) is None


async def test_server_away_longer_than_the_lease_does_not_take_the_run_from_a_live_machine(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=2.0)
    task_id = await rig.assign_new_task("outlive the lease")
    run = await _ticking(rig, task_id)
    await rig.stop_server()
    # The daemon heartbeats all along; its heartbeats wait in the broker for the server.
    await asyncio.sleep(rig.settings.lease_seconds * 2)
    await rig.start_server()
    await asyncio.sleep(rig.settings.lease_seconds)
    rig.control.go()
    done = await rig.wait_run(task_id, lambda r: r["status"] not in RUNNING)
    assert done["status"] == "SUCCEEDED" and done["attempt"] == 1, done
    assert_complete_transcript(await rig.transcript(run["id"]), 1, start=1)
    assert len(rig.control.starts()) == 1


async def test_a_retry_arriving_while_the_old_attempt_still_runs_here_stops_the_old_one_first(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease=1.5, via_proxy=True)
    assert rig.proxy is not None
    task_id = await rig.assign_new_task("one agent at a time")
    await _ticking(rig, task_id)
    (first_cli,) = rig.control.starts()

    # Cut off longer than the lease, with the CLI still working when the connection returns.
    await rig.proxy.down()
    await rig.wait_run(task_id, lambda r: r["attempt"] == 2, within=15)
    await rig.proxy.up()

    async def second_started() -> bool:
        return len(rig.control.starts()) == 2

    await eventually(second_started, within=30)
    assert not rig.control.alive(first_cli), (
        "the daemon runs attempt 2 while attempt 1 of the same run still works in its worktree"
    )
    rig.control.go()
    done = await rig.wait_run(task_id, lambda r: r["status"] == "SUCCEEDED", within=30)
    assert done["attempt"] == 2
    second = texts(await rig.transcript(done["id"]), 2)
    assert second[0] == "start 2: clean", second[:2]
