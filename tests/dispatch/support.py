"""A workspace with an agent on a connected, ready machine, and a daemon stand-in that takes
jobs and reports run events the way the real executor does."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from taskmachine.wire import topology
from taskmachine.wire.runs import RunFinished, RunOutput, RunStarted
from tests.conftest import RunningServer
from tests.machines.support import FakeDaemon, Owner, connect_machine, eventually, owner, runtime

CLAIM = "mutation($r: ID!, $a: Int!) { claimRun(runId: $r, attempt: $a) { accepted reason } }"
RUNS = """query($w: ID!, $t: ID) { runs(workspaceId: $w, filter: {taskId: $t}) { edges { node {
  id status attempt failureCode error queueReason queuePosition sessionId costUsd triggerKind
  history { fromStatus toStatus reason attempt } } } } }"""


@dataclass
class Fleet:
    who: Owner
    creds: dict[str, Any]
    daemon: FakeDaemon
    agent_id: str
    runtime_id: str


async def ready_fleet(server: RunningServer, concurrency: int = 1) -> Fleet:
    who = await owner(server)
    creds = await connect_machine(server, who)
    daemon = FakeDaemon(creds)
    await daemon.__aenter__()
    await daemon.beat([runtime("claude")])

    async def runtime_id() -> Any:
        data = await server.ok(
            "query($w: ID!) { runtimes(workspaceId: $w) { id } }",
            {"w": who.workspace_id},
            who.token,
        )
        return data["runtimes"] and data["runtimes"][0]["id"]

    rid = await eventually(runtime_id)
    await server.ok(
        "mutation($r: ID!) { setRuntimeEnabled(runtimeId: $r, enabled: true) { id } }",
        {"r": rid},
        who.token,
    )
    agent = await server.ok(
        'mutation($w: ID!, $r: ID!, $c: Int!) { createAgent(workspaceId: $w, profile: {name: "Coder", defaultRuntimeId: $r, concurrencyLimit: $c}) { id } }',
        {"w": who.workspace_id, "r": rid, "c": concurrency},
        who.token,
    )
    return Fleet(who, creds, daemon, agent["createAgent"]["id"], rid)


async def new_task(
    server: RunningServer, fleet: Fleet, title: str = "Fix the bug", priority: str = "MEDIUM"
) -> str:
    data = await server.ok(
        "mutation($w: ID!, $t: String!, $p: TaskPriority!) { createTask(input: {workspaceId: $w, title: $t, priority: $p}) { id } }",
        {"w": fleet.who.workspace_id, "t": title, "p": priority},
        fleet.who.token,
    )
    return str(data["createTask"]["id"])


async def assign(server: RunningServer, fleet: Fleet, task_id: str) -> None:
    await server.ok(
        "mutation($t: ID!, $a: ID!) { assignTask(input: {taskId: $t, agentId: $a}) { id } }",
        {"t": task_id, "a": fleet.agent_id},
        fleet.who.token,
    )


async def runs_of(server: RunningServer, fleet: Fleet, task_id: str) -> list[dict[str, Any]]:
    data = await server.ok(RUNS, {"w": fleet.who.workspace_id, "t": task_id}, fleet.who.token)
    return [e["node"] for e in data["runs"]["edges"]]


class JobInbox:
    """The machine's jobs queue, read as the daemon reads it."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    async def open(self) -> JobInbox:
        queues = await topology.open_machine_queues(
            self.fleet.daemon.channel, self.fleet.creds["machineId"]
        )
        self.jobs = queues.jobs
        self.control = queues.control
        return self

    async def next(self, within: float = 5.0) -> tuple[dict[str, Any], AbstractIncomingMessage]:
        async def get() -> Any:
            return await self.jobs.get(fail=False, no_ack=False)

        message = await eventually(get, within=within)
        return json.loads(message.body), message


class RunReporter:
    """Publishes a run's events with seq numbers, as the executor does."""

    def __init__(self, fleet: Fleet, job: dict[str, Any]) -> None:
        self.fleet = fleet
        self.job = job
        self.seq = 0

    async def _send(self, event: Any) -> None:
        machine_id = self.fleet.creds["machineId"]
        await self.fleet.daemon.events.publish(
            aio_pika.Message(
                event.to_body(),
                user_id=topology.machine_username(machine_id),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=topology.run_event_routing_key(
                machine_id, uuid.UUID(self.job["run_id"]).hex, event.kind
            ),
            timeout=5,
        )

    def _base(self) -> dict[str, Any]:
        base = {
            "run_id": uuid.UUID(self.job["run_id"]),
            "attempt": self.job["attempt"],
            "seq": self.seq,
            "sent_at": datetime.now(UTC),
        }
        self.seq += 1
        return base

    async def started(self) -> None:
        await self._send(RunStarted(**self._base()))

    async def output(self, *events: dict[str, Any]) -> None:
        await self._send(RunOutput(**self._base(), events=list(events)))

    async def finished(self, outcome: str = "succeeded", **fields: Any) -> None:
        await self._send(RunFinished(**self._base(), outcome=outcome, **fields))  # type: ignore[arg-type]


async def claim(server: RunningServer, fleet: Fleet, job: dict[str, Any]) -> bool:
    data = await server.ok(
        CLAIM, {"r": job["run_id"], "a": job["attempt"]}, fleet.creds["accessToken"]
    )
    return bool(data["claimRun"]["accepted"])


async def claimed_run(server: RunningServer) -> tuple[Fleet, dict[str, Any]]:
    """A connected machine holding the claim on a freshly assigned task's run (its job acked)."""
    fleet = await ready_fleet(server)
    inbox = await JobInbox(fleet).open()
    await assign(server, fleet, await new_task(server, fleet))
    job, message = await inbox.next()
    assert await claim(server, fleet, job)
    await message.ack()
    return fleet, job
