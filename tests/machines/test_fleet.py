"""Heartbeats make a machine online; silence makes it offline; runtimes follow the reports;
owners enable them; removal cuts the broker connection; bad heartbeats are dead-lettered."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aio_pika
import sqlalchemy as sa

from taskmachine import models as m
from taskmachine.wire import topology
from tests.api.gqlclient import Subscription, ws_session
from tests.conftest import RunningServer
from tests.machines.support import FakeDaemon, connect_machine, eventually, owner, runtime

MACHINES = """query($w: ID!) { machines(workspaceId: $w) { edges { node {
  id name online cliVersion executionRoot capacity lastHeartbeatAt updateStatus
  runtimes { id name version enabled ready available capabilities } } } } }"""


async def _machines(server: RunningServer, token: str, ws: str) -> list[dict[str, Any]]:
    data = await server.ok(MACHINES, {"w": ws}, token)
    return [e["node"] for e in data["machines"]["edges"]]


async def test_heartbeats_online_runtimes_enable_and_stale(machine_server: RunningServer) -> None:
    # Short enough to watch a machine go stale, long enough for a loaded CI machine.
    machine_server.settings.__dict__["machine_online_window_seconds"] = 3.0
    who = await owner(machine_server)
    creds = await connect_machine(machine_server, who)
    async with ws_session(machine_server.ws_url, who.token) as session:
        changes = Subscription(
            session,
            "subscription($w: ID!) { machinesChanged(workspaceId: $w) { machineId machine { online } } }",
            {"w": who.workspace_id},
        )
        await asyncio.sleep(0.2)
        async with FakeDaemon(creds) as daemon:
            await daemon.beat([runtime("claude"), runtime("codex", "0.169.0")])

            async def online() -> Any:
                # A live daemon keeps beating; with a 1 s window a single beat can go stale
                # before a loaded machine has answered the query.
                await daemon.beat([runtime("claude"), runtime("codex", "0.169.0")])
                rows = await _machines(machine_server, who.token, who.workspace_id)
                return rows if rows and rows[0]["online"] else None

            (machine,) = await eventually(online)
            assert (
                machine["executionRoot"] == "/home/me/.taskmachine/work"
                and machine["capacity"] == 4
            )
            names = {r["name"]: r for r in machine["runtimes"]}
            assert set(names) == {"claude", "codex"}
            # Detected is not approved: new runtimes start disabled, so not ready.
            assert all(
                not r["enabled"] and not r["ready"] and r["available"] for r in names.values()
            )
            assert names["claude"]["capabilities"]["models"][0]["reasoning_levels"] == [
                "low",
                "high",
            ]
            change = (await changes.next())["machinesChanged"]
            assert change == {"machineId": creds["machineId"], "machine": {"online": True}}

            await daemon.beat([runtime("claude"), runtime("codex", "0.169.0")])
            enabled = await machine_server.ok(
                "mutation($r: ID!) { setRuntimeEnabled(runtimeId: $r, enabled: true) { enabled ready } }",
                {"r": names["claude"]["id"]},
                who.token,
            )
            assert enabled["setRuntimeEnabled"] == {"enabled": True, "ready": True}

            # codex uninstalled: it drops off at the next heartbeat.
            await daemon.beat([runtime("claude")])

            async def codex_gone() -> Any:
                rows = await _machines(machine_server, who.token, who.workspace_id)
                return {r["name"] for r in rows[0]["runtimes"]} == {"claude"}

            await eventually(codex_gone)
        # Silence: offline after the window, even though the last status said online.
        started = time.monotonic()

        async def offline() -> Any:
            rows = await _machines(machine_server, who.token, who.workspace_id)
            return not rows[0]["online"] and not rows[0]["runtimes"][0]["ready"]

        await eventually(offline, within=15)
        assert time.monotonic() - started >= 0.5
        await changes.close()


async def test_bad_heartbeats_are_dead_lettered_and_ingest_goes_on(
    machine_server: RunningServer,
) -> None:
    who = await owner(machine_server)
    creds = await connect_machine(machine_server, who)
    broker = machine_server.state.services["broker"]
    dead = await broker.channel.declare_queue(
        topology.DEAD_QUEUE, durable=True, arguments=topology.queue_arguments("dead")
    )
    async with FakeDaemon(creds) as daemon:
        await daemon.send(b"{not json")
        await daemon.send(
            json.dumps({"v": 1, "machine_id": creds["machineId"], "seq": "x"}).encode()
        )
        other = daemon.heartbeat([runtime()]).model_copy(update={"machine_id": uuid.uuid4()})
        await daemon.send(other.to_body())

        reasons: list[str] = []

        async def three_dead() -> Any:
            message = await dead.get(fail=False)
            if message is not None:
                reasons.append(message.headers["x-death"][0]["reason"])
                await message.ack()
            return len(reasons) >= 3

        await eventually(three_dead)
        await daemon.beat([runtime()])

        async def online() -> Any:
            rows = await _machines(machine_server, who.token, who.workspace_id)
            return rows[0]["online"]

        await eventually(online)
    assert reasons == ["rejected"] * 3
    assert await dead.get(fail=False) is None


async def test_removal_revokes_tokens_and_closes_the_broker_connection(
    machine_server: RunningServer,
) -> None:
    who = await owner(machine_server)
    creds = await connect_machine(machine_server, who)
    connection = await aio_pika.connect(creds["amqpUrl"])
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    started = time.monotonic()
    await machine_server.ok(
        "mutation($id: ID!) { removeMachine(machineId: $id) }",
        {"id": creds["machineId"]},
        who.token,
    )
    await asyncio.wait_for(closed.wait(), timeout=5)
    assert time.monotonic() - started < 5
    assert (
        await machine_server.error_code("{ thisMachine { id } }", token=creds["accessToken"])
        == "UNAUTHENTICATED"
    )
    try:
        await aio_pika.connect(creds["amqpUrl"], timeout=5)
        refused = False
    except Exception:
        refused = True
    assert refused
    assert await _machines(machine_server, who.token, who.workspace_id) == []


async def test_stale_runtime_raises_one_inbox_item_for_agent_managers(
    machine_server: RunningServer,
) -> None:
    machine_server.settings.__dict__["machine_online_window_seconds"] = 0.5
    who = await owner(machine_server)
    member = await machine_server.token_for("member@example.com")
    await machine_server.ok(
        'mutation($w: ID!) { addMember(input: {workspaceId: $w, email: "member@example.com", role: MEMBER}) { id } }',
        {"w": who.workspace_id},
        who.token,
    )
    creds = await connect_machine(machine_server, who)
    async with FakeDaemon(creds) as daemon:
        await daemon.beat([runtime()])

        async def claude_id() -> Any:
            rows = await _machines(machine_server, who.token, who.workspace_id)
            return rows and rows[0]["runtimes"] and rows[0]["runtimes"][0]["id"]

        runtime_id = await eventually(claude_id)
        await machine_server.ok(
            "mutation($r: ID!) { setRuntimeEnabled(runtimeId: $r, enabled: true) { id } }",
            {"r": runtime_id},
            who.token,
        )
        await machine_server.ok(
            'mutation($w: ID!, $r: ID!) { createAgent(workspaceId: $w, profile: {name: "Coder", defaultRuntimeId: $r}) { id } }',
            {"w": who.workspace_id, "r": runtime_id},
            who.token,
        )
    inbox = "{ inbox(status: OPEN) { edges { node { kind title data } } } }"

    async def one_item() -> Any:
        items = (await machine_server.ok(inbox, token=who.token))["inbox"]["edges"]
        return items if items else None

    items = await eventually(one_item)
    await asyncio.sleep(1.0)  # several more sweeps: still one item
    items = (await machine_server.ok(inbox, token=who.token))["inbox"]["edges"]
    assert len(items) == 1 and items[0]["node"]["kind"] == "RUNTIME_STALE"
    assert (
        "Coder" not in items[0]["node"]["title"]
        and items[0]["node"]["data"]["runtimeId"] == runtime_id
    )
    assert (await machine_server.ok(inbox, token=member))["inbox"]["edges"] == []
    # It comes back (beating, as a live daemon does): the item resolves itself.
    async with FakeDaemon(creds) as daemon:

        async def resolved() -> Any:
            await daemon.beat([runtime()])
            return (await machine_server.ok(inbox, token=who.token))["inbox"]["edges"] == []

        await eventually(resolved)


async def test_update_nudge_and_update_request_reach_the_control_queue(
    machine_server: RunningServer,
) -> None:
    machine_server.settings.__dict__["latest_cli_version"] = "0.2.0"
    machine_server.settings.__dict__["min_cli_version"] = "0.1.5"
    who = await owner(machine_server)
    creds = await connect_machine(machine_server, who)
    async with FakeDaemon(creds) as daemon:
        await daemon.beat([runtime()], version="0.1.0")
        control = await topology.open_machine_queues(daemon.channel, creds["machineId"])

        async def unsupported() -> Any:
            rows = await _machines(machine_server, who.token, who.workspace_id)
            return rows and rows[0]["updateStatus"] == "UNSUPPORTED"

        await eventually(unsupported)
        inbox = "{ inbox(kind: UPDATE_NUDGE, status: OPEN) { edges { node { data } } } }"

        async def nudged() -> Any:
            return (await machine_server.ok(inbox, token=who.token))["inbox"]["edges"]

        (item,) = await eventually(nudged)
        assert item["node"]["data"]["action"] == "update_machine"
        await asyncio.sleep(0.6)
        assert len((await machine_server.ok(inbox, token=who.token))["inbox"]["edges"]) == 1

        queued = await machine_server.ok(
            "mutation($id: ID!) { requestMachineUpdate(machineId: $id) { updateStatus } }",
            {"id": creds["machineId"]},
            who.token,
        )
        assert queued["requestMachineUpdate"]["updateStatus"] == "QUEUED"
        message = await control.control.get(timeout=5)
        body = json.loads(message.body)
        assert body["kind"] == "update" and body["target_version"] == "0.2.0"
        await message.ack()
        assert (await machine_server.ok(inbox, token=who.token))["inbox"]["edges"] == []
    async with machine_server.state.session_factory() as session:
        row = await session.get(m.Machine, uuid.UUID(creds["machineId"]))
        assert row is not None and row.update_requested_at is not None
        assert (await session.scalar(sa.select(sa.func.count()).select_from(m.InboxItem))) == 1
