"""Assignment → recorded run → outbox → the machine's queue → claim → events → timeline, and
the failure table, with a stand-in daemon over the real broker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.api.gqlclient import Subscription, ws_session
from tests.conftest import RunningServer
from tests.dispatch.support import (
    JobInbox,
    RunReporter,
    assign,
    claim,
    new_task,
    ready_fleet,
    runs_of,
)
from tests.machines.support import eventually

TRANSCRIPT = "subscription($r: ID!) { runTranscript(runId: $r) { attempt seq events } }"


async def test_assignment_runs_on_the_machine_and_streams_its_transcript(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server)
    inbox = await JobInbox(fleet).open()
    task_id = await new_task(machine_server, fleet)
    await assign(machine_server, fleet, task_id)
    job, message = await inbox.next()
    assert job["attempt"] == 1 and job["runtime"] == "claude" and job["subject_kind"] == "task"
    assert job["subject_id"] == task_id and job["run_token"].startswith("tm_run_")
    assert "You have been assigned this task" in job["prompt"] and "## Identity" in job["prompt"]
    assert message.priority == 5
    assert await claim(machine_server, fleet, job)
    # The holder asking again (its answer lost) is told yes again; other machines lose
    # (tests/dispatch/test_broker_claim.py).
    assert await claim(machine_server, fleet, job)
    await message.ack()

    reporter = RunReporter(fleet, job)
    await reporter.started()
    await reporter.output({"kind": "text", "text": "working on it"})
    # A subscriber that joins late gets what is stored, then live chunks; no gap, no duplicate.
    async with ws_session(machine_server.ws_url, fleet.who.token) as session:

        async def stored() -> Any:
            data = await machine_server.ok(
                "query($r: ID!) { transcript(runId: $r) { totalCount } }",
                {"r": job["run_id"]},
                fleet.who.token,
            )
            return data["transcript"]["totalCount"] == 1

        await eventually(stored)
        sub = Subscription(session, TRANSCRIPT, {"r": job["run_id"]})
        first = (await sub.next())["runTranscript"]
        assert first["seq"] == 1 and first["events"] == [{"kind": "text", "text": "working on it"}]
        await reporter.output(
            {"kind": "tool_call", "call_id": "c1", "name": "Bash", "input": {"command": "ls"}}
        )
        await reporter.output({"kind": "text", "text": "done"})
        seqs = [(await sub.next())["runTranscript"]["seq"] for _ in range(2)]
        assert seqs == [2, 3]
        await sub.close()
    await reporter.finished(
        "succeeded", session_id="sess-1", usage={"input_tokens": 10}, cost_usd=0.01
    )

    async def succeeded() -> Any:
        runs = await runs_of(machine_server, fleet, task_id)
        return runs[0] if runs[0]["status"] == "SUCCEEDED" else None

    run = await eventually(succeeded)
    assert run["sessionId"] == "sess-1" and run["costUsd"] == 0.01
    assert [h["toStatus"] for h in run["history"]] == [
        "QUEUED",
        "DISPATCHED",
        "CLAIMED",
        "RUNNING",
        "SUCCEEDED",
    ]
    timeline = await machine_server.ok(
        "query($t: ID!) { timeline(taskId: $t) { edges { node { kind data } } } }",
        {"t": task_id},
        fleet.who.token,
    )
    run_events = [
        e["node"]["data"]["status"]
        for e in timeline["timeline"]["edges"]
        if e["node"]["kind"] == "RUN"
    ]
    assert run_events == ["queued", "running", "succeeded"]
    # A repeated report changes nothing.
    reporter.seq = 3
    await reporter.output({"kind": "text", "text": "duplicate"})
    await reporter.finished("failed", failure_code="cli_error")
    await asyncio.sleep(0.3)
    data = await machine_server.ok(
        "query($r: ID!) { transcript(runId: $r) { totalCount } }",
        {"r": job["run_id"]},
        fleet.who.token,
    )
    assert data["transcript"]["totalCount"] == 3
    assert (await runs_of(machine_server, fleet, task_id))[0]["status"] == "SUCCEEDED"
    await fleet.daemon.__aexit__()


async def test_nonzero_exit_retries_once_then_fails_and_auth_never_retries(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server)
    inbox = await JobInbox(fleet).open()
    task_id = await new_task(machine_server, fleet)
    await assign(machine_server, fleet, task_id)
    for attempt in (1, 2):
        job, message = await inbox.next()
        assert job["attempt"] == attempt
        assert await claim(machine_server, fleet, job)
        await message.ack()
        reporter = RunReporter(fleet, job)
        await reporter.started()
        await reporter.finished("failed", exit_code=1, failure_code="cli_error", error="boom " * 10)

    async def failed() -> Any:
        runs = await runs_of(machine_server, fleet, task_id)
        return runs[0] if runs[0]["status"] == "FAILED" else None

    run = await eventually(failed)
    assert run["failureCode"] == "cli_error" and run["attempt"] == 2 and "boom" in run["error"]
    assert await inbox.jobs.get(fail=False) is None

    other = await new_task(machine_server, fleet, "needs login")
    await assign(machine_server, fleet, other)
    job, message = await inbox.next()
    assert await claim(machine_server, fleet, job)
    await message.ack()
    await RunReporter(fleet, job).finished("failed", exit_code=1, failure_code="auth", error="401")

    async def auth_failed() -> Any:
        runs = await runs_of(machine_server, fleet, other)
        return runs[0] if runs[0]["status"] == "FAILED" else None

    run = await eventually(auth_failed)
    assert run["failureCode"] == "auth" and run["attempt"] == 1
    await fleet.daemon.__aexit__()


async def test_unclaimed_run_fails_runtime_offline_and_task_returns_to_todo(
    machine_server: RunningServer,
) -> None:
    machine_server.settings.__dict__["claim_deadline_seconds"] = 0.5
    fleet = await ready_fleet(machine_server)
    task_id = await new_task(machine_server, fleet)
    await machine_server.ok(
        "mutation($t: ID!) { setTaskStatus(taskId: $t, status: IN_PROGRESS) { id } }",
        {"t": task_id},
        fleet.who.token,
    )
    await assign(machine_server, fleet, task_id)

    async def failed() -> Any:
        runs = await runs_of(machine_server, fleet, task_id)
        return runs[0] if runs[0]["status"] == "FAILED" else None

    run = await eventually(failed)
    assert run["failureCode"] == "runtime_offline"
    task = await machine_server.ok(
        "query($t: ID!) { task(id: $t) { status } comments(taskId: $t) { edges { node { body author { ... on Agent { name } } } } } }",
        {"t": task_id},
        fleet.who.token,
    )
    assert task["task"]["status"] == "TODO"
    (comment,) = task["comments"]["edges"]
    assert "no machine claimed" in comment["node"]["body"] and comment["node"]["author"] == {
        "name": "Coder"
    }
    await fleet.daemon.__aexit__()


async def test_lost_lease_retries_on_a_clean_worktree_then_fails(
    machine_server: RunningServer,
) -> None:
    machine_server.settings.__dict__["lease_seconds"] = 1.5
    fleet = await ready_fleet(machine_server)
    inbox = await JobInbox(fleet).open()
    task_id = await new_task(machine_server, fleet)
    await assign(machine_server, fleet, task_id)
    job, message = await inbox.next()
    assert job["clean_worktree"] is False
    assert await claim(machine_server, fleet, job)
    await message.ack()
    await RunReporter(fleet, job).started()
    # No heartbeat lists the run: the lease runs out.
    retry, message = await inbox.next(within=10)
    assert retry["attempt"] == 2 and retry["clean_worktree"] is True
    assert await claim(machine_server, fleet, retry)
    await message.ack()
    # Heartbeats that list the run keep it alive...
    for _ in range(8):
        beat = fleet.daemon.heartbeat(
            [__import__("tests.machines.support", fromlist=["runtime"]).runtime("claude")]
        )
        beat = beat.model_copy(
            update={
                "active_runs": [
                    __import__("taskmachine.wire.messages", fromlist=["ActiveRun"]).ActiveRun(
                        run_id=__import__("uuid").UUID(retry["run_id"]), attempt=2
                    )
                ]
            }
        )
        await fleet.daemon.send(beat.to_body())
        await asyncio.sleep(0.25)
    assert (await runs_of(machine_server, fleet, task_id))[0]["status"] == "CLAIMED"

    # ...and when they stop, the second loss is final.
    async def lost() -> Any:
        runs = await runs_of(machine_server, fleet, task_id)
        return runs[0] if runs[0]["status"] == "FAILED" else None

    run = await eventually(lost, within=10)
    assert run["failureCode"] == "lease_lost" and run["attempt"] == 2
    await fleet.daemon.__aexit__()


async def test_cancel_reaches_the_machine_and_queued_runs_show_why_they_wait(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server, concurrency=1)
    inbox = await JobInbox(fleet).open()
    first = await new_task(machine_server, fleet, "first", "LOW")
    await assign(machine_server, fleet, first)
    job, message = await inbox.next()
    assert await claim(machine_server, fleet, job)
    await message.ack()
    await RunReporter(fleet, job).started()
    # The agent is busy: later runs wait, the urgent one first.
    low = await new_task(machine_server, fleet, "low", "LOW")
    urgent = await new_task(machine_server, fleet, "urgent", "URGENT")
    await assign(machine_server, fleet, low)
    await assign(machine_server, fleet, urgent)

    async def waiting() -> Any:
        a = (await runs_of(machine_server, fleet, urgent))[0]
        b = (await runs_of(machine_server, fleet, low))[0]
        return (a, b) if a["queuePosition"] and b["queuePosition"] else None

    urgent_run, low_run = await eventually(waiting)
    assert urgent_run["queueReason"] == "agent at 1/1" and urgent_run["queuePosition"] == 1
    assert low_run["queuePosition"] == 2

    cancelled = await machine_server.ok(
        "mutation($id: ID!) { cancelRun(id: $id) { status cancelRequested } }",
        {"id": job["run_id"]},
        fleet.who.token,
    )
    assert cancelled["cancelRun"] == {"status": "RUNNING", "cancelRequested": True}
    control = await eventually(lambda: inbox.control.get(fail=False))
    body = json.loads(control.body)
    assert body == {"v": 1, "kind": "cancel", "run_id": job["run_id"], "attempt": 1}
    await RunReporter(fleet, job).finished("cancelled")
    nxt, message = await inbox.next()
    assert nxt["subject_id"] == urgent, "the urgent task goes before the older low one"
    # Cancelling a queued run needs no machine.
    low_run = (await runs_of(machine_server, fleet, low))[0]
    done = await machine_server.ok(
        "mutation($id: ID!) { cancelRun(id: $id) { status } }",
        {"id": low_run["id"]},
        fleet.who.token,
    )
    assert done["cancelRun"]["status"] == "CANCELLED"
    await fleet.daemon.__aexit__()


async def test_an_assignment_with_nothing_waiting_is_dispatched_by_its_own_request(
    machine_server: RunningServer,
) -> None:
    """No scheduler pass is needed when the run may go at once: the assignment's transaction
    dispatches it and the job is published right after its commit. A run that must wait is
    left to the pass."""
    fleet = await ready_fleet(machine_server, concurrency=1)
    inbox = await JobInbox(fleet).open()
    scheduler = machine_server.state.services["scheduler"]
    scheduler._task.cancel()  # no passes from here on: only the request can dispatch
    first = await new_task(machine_server, fleet, "first")
    await assign(machine_server, fleet, first)
    job, message = await asyncio.wait_for(inbox.next(), 10)
    assert job["subject_id"] == first
    run = (await runs_of(machine_server, fleet, first))[0]
    assert [h["toStatus"] for h in run["history"]] == ["QUEUED", "DISPATCHED"]
    # The agent is at its limit now: the next assignment stays queued for a pass.
    second = await new_task(machine_server, fleet, "second")
    await assign(machine_server, fleet, second)
    await asyncio.sleep(0.3)
    assert (await runs_of(machine_server, fleet, second))[0]["status"] == "QUEUED"
    assert await inbox.jobs.get(fail=False) is None
    await message.ack()
    await fleet.daemon.__aexit__()
