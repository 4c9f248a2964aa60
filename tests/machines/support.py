"""Connect a machine through the real approval flow and speak AMQP as its daemon would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from taskmachine.wire import topology
from taskmachine.wire.messages import Heartbeat, ModelReport, RuntimeReport
from tests.conftest import RunningServer

REQUEST = """mutation($i: MachineApprovalRequestInput!) { requestMachineApproval(input: $i) {
  userCode pollToken approvalUrl expiresAt pollIntervalSeconds } }"""
POLL = """mutation($t: String!) { pollMachineApproval(pollToken: $t) { status credentials {
  machineId machineName accessToken accessTokenExpiresAt refreshToken amqpUrl workspaceIds } } }"""
APPROVE = """mutation($c: String!, $w: [ID!]!) { approveMachine(code: $c, workspaceIds: $w) {
  status machineId } }"""


@dataclass
class Owner:
    token: str
    workspace_id: str


async def owner(server: RunningServer, email: str = "owner@example.com") -> Owner:
    token = await server.token_for(email)
    ws = await server.ok('mutation { createWorkspace(input: {name: "Fleet"}) { id } }', token=token)
    return Owner(token, ws["createWorkspace"]["id"])


async def connect_machine(
    server: RunningServer, who: Owner, name: str = "laptop"
) -> dict[str, Any]:
    ticket = (
        await server.ok(
            REQUEST, {"i": {"name": name, "hostname": "h", "os": "linux", "cliVersion": "0.1.0"}}
        )
    )["requestMachineApproval"]
    await server.ok(APPROVE, {"c": ticket["userCode"], "w": [who.workspace_id]}, who.token)
    poll = (await server.ok(POLL, {"t": ticket["pollToken"]}))["pollMachineApproval"]
    assert poll["status"] == "APPROVED"
    creds: dict[str, Any] = poll["credentials"]
    return creds


def runtime(
    name: str = "claude", version: str = "2.1.329", available: bool = True
) -> RuntimeReport:
    return RuntimeReport(
        name=name,
        provider="anthropic" if name == "claude" else "openai",
        path=f"/usr/bin/{name}",
        version=version,
        models=[ModelReport(id="opus", display_name="Opus", reasoning_levels=["low", "high"])],
        available=available,
    )


class FakeDaemon:
    """Publishes heartbeats with the machine's own broker credentials."""

    def __init__(self, creds: dict[str, Any]) -> None:
        self.machine_id = creds["machineId"]
        self.amqp_url = creds["amqpUrl"]
        self.connection: AbstractRobustConnection | None = None
        self.seq = 0

    async def __aenter__(self) -> FakeDaemon:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel()
        self.events = await topology.open_events_exchange(self.channel)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.connection is not None:
            await self.connection.close()

    def heartbeat(
        self,
        runtimes: list[RuntimeReport] | None,
        version: str = "0.1.0",
        digest: str | None = None,
    ) -> Heartbeat:
        """A daemon's heartbeat; with a digest as a current daemon sends it (runtimes None: the
        list is unchanged), without one as an older daemon does."""
        self.seq += 1
        return Heartbeat(
            machine_id=__import__("uuid").UUID(self.machine_id),
            sent_at=datetime.now(UTC),
            seq=self.seq,
            cli_version=version,
            execution_root="/home/me/.taskmachine/work",
            capacity=4,
            runtimes=runtimes,
            runtimes_digest=digest,
        )

    async def send(self, body: bytes, routing_key: str | None = None) -> None:
        await self.events.publish(
            aio_pika.Message(
                body,
                user_id=topology.machine_username(self.machine_id),
                content_type="application/json",
            ),
            routing_key=routing_key or topology.heartbeat_routing_key(self.machine_id),
            timeout=5,
        )

    async def beat(
        self,
        runtimes: list[RuntimeReport] | None,
        version: str = "0.1.0",
        digest: str | None = None,
    ) -> None:
        await self.send(self.heartbeat(runtimes, version, digest).to_body())


async def eventually(check: Any, within: float = 10.0, every: float = 0.05) -> Any:
    """Wait until an async check returns something truthy; return it."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {result!r})")
        await asyncio.sleep(every)
