"""`tama setup`'s server half: request, approve / deny / expire, one-time hand-off, token rotation."""

from __future__ import annotations

import asyncio

import aio_pika
import sqlalchemy as sa

from taskmachine import models as m
from tests.conftest import RunningServer
from tests.machines.support import APPROVE, POLL, REQUEST, connect_machine, owner

THIS = "{ thisMachine { id name online updateStatus cliVersion } }"
REFRESH = (
    "mutation($r: String!) { refreshMachineToken(refreshToken: $r) { accessToken refreshToken } }"
)


async def test_approve_hands_credentials_over_once(machine_server: RunningServer) -> None:
    who = await owner(machine_server)
    ticket = (
        await machine_server.ok(
            REQUEST,
            {"i": {"name": "build-box", "hostname": "bb", "os": "linux", "cliVersion": "0.1.0"}},
        )
    )["requestMachineApproval"]
    assert ticket["approvalUrl"].endswith(f"/machines/approve?code={ticket['userCode']}")
    pending = (await machine_server.ok(POLL, {"t": ticket["pollToken"]}))["pollMachineApproval"]
    assert pending == {"status": "PENDING", "credentials": None}

    seen = await machine_server.ok(
        "query($c: String!) { machineApproval(code: $c) { name hostname os cliVersion status } }",
        {"c": ticket["userCode"].lower()},
        who.token,
    )
    assert seen["machineApproval"] == {
        "name": "build-box",
        "hostname": "bb",
        "os": "linux",
        "cliVersion": "0.1.0",
        "status": "PENDING",
    }
    # At least one workspace is required.
    assert (
        await machine_server.error_code(APPROVE, {"c": ticket["userCode"], "w": []}, who.token)
        == "BAD_USER_INPUT"
    )
    await machine_server.ok(APPROVE, {"c": ticket["userCode"], "w": [who.workspace_id]}, who.token)
    first = (await machine_server.ok(POLL, {"t": ticket["pollToken"]}))["pollMachineApproval"]
    creds = first["credentials"]
    assert first["status"] == "APPROVED" and creds["workspaceIds"] == [who.workspace_id]
    assert creds["amqpUrl"].startswith(f"amqp://machine-{creds['machineId']}:")
    again = (await machine_server.ok(POLL, {"t": ticket["pollToken"]}))["pollMachineApproval"]
    assert again == {"status": "APPROVED", "credentials": None}

    # The access token works for the machine's own questions, not for workspace data.
    me = (await machine_server.ok(THIS, token=creds["accessToken"]))["thisMachine"]
    assert me["name"] == "build-box" and me["online"] is False and me["updateStatus"] == "CURRENT"
    assert (
        await machine_server.error_code("{ workspaces { id } }", token=creds["accessToken"])
        == "FORBIDDEN"
    )
    # The broker accepts the machine's own credentials.
    connection = await aio_pika.connect(creds["amqpUrl"])
    await connection.close()
    # Nothing secret is kept at rest.
    async with machine_server.state.session_factory() as session:
        stored = (await session.scalars(sa.select(m.MachineToken.token_hash))).all()
    assert creds["accessToken"] not in stored and creds["refreshToken"] not in stored


async def test_refresh_rotates_and_the_old_token_dies(machine_server: RunningServer) -> None:
    creds = await connect_machine(machine_server, await owner(machine_server))
    rotated = (await machine_server.ok(REFRESH, {"r": creds["refreshToken"]}))[
        "refreshMachineToken"
    ]
    assert rotated["refreshToken"] != creds["refreshToken"]
    assert (await machine_server.ok(THIS, token=rotated["accessToken"]))["thisMachine"][
        "id"
    ] == creds["machineId"]
    assert (
        await machine_server.error_code(REFRESH, {"r": creds["refreshToken"]}) == "UNAUTHENTICATED"
    )
    body = await machine_server.graphql(REFRESH, {"r": "tm_mrt_nonsense"})
    assert "run tama setup again" in body["errors"][0]["message"]


async def test_deny_and_expire(machine_server: RunningServer) -> None:
    who = await owner(machine_server)
    ticket = (await machine_server.ok(REQUEST, {"i": {"name": "stranger"}}))[
        "requestMachineApproval"
    ]
    await machine_server.ok(
        "mutation($c: String!) { denyMachine(code: $c) { status } }",
        {"c": ticket["userCode"]},
        who.token,
    )
    denied = (await machine_server.ok(POLL, {"t": ticket["pollToken"]}))["pollMachineApproval"]
    assert denied == {"status": "DENIED", "credentials": None}
    assert (
        await machine_server.error_code(
            APPROVE, {"c": ticket["userCode"], "w": [who.workspace_id]}, who.token
        )
        == "CONFLICT"
    )

    late = (await machine_server.ok(REQUEST, {"i": {"name": "slow"}}))["requestMachineApproval"]
    async with machine_server.state.session_factory() as session:
        await session.execute(
            sa.update(m.MachineApproval)
            .where(m.MachineApproval.user_code == late["userCode"])
            .values(expires_at=m.utcnow())
        )
        await session.commit()
    await asyncio.sleep(0.01)
    expired = (await machine_server.ok(POLL, {"t": late["pollToken"]}))["pollMachineApproval"]
    assert expired == {"status": "EXPIRED", "credentials": None}
    assert (
        await machine_server.error_code(
            APPROVE, {"c": late["userCode"], "w": [who.workspace_id]}, who.token
        )
        == "CONFLICT"
    )


async def test_only_machine_managers_can_approve(machine_server: RunningServer) -> None:
    who = await owner(machine_server)
    member = await machine_server.token_for("member@example.com")
    await machine_server.ok(
        'mutation($w: ID!) { addMember(input: {workspaceId: $w, email: "member@example.com", role: MEMBER}) { id } }',
        {"w": who.workspace_id},
        who.token,
    )
    ticket = (await machine_server.ok(REQUEST, {"i": {"name": "x"}}))["requestMachineApproval"]
    assert (
        await machine_server.error_code(
            APPROVE, {"c": ticket["userCode"], "w": [who.workspace_id]}, member
        )
        == "FORBIDDEN"
    )
    outsider = await machine_server.token_for("out@example.com")
    assert (
        await machine_server.error_code(
            APPROVE, {"c": ticket["userCode"], "w": [who.workspace_id]}, outsider
        )
        == "NOT_FOUND"
    )
    pending = (await machine_server.ok(POLL, {"t": ticket["pollToken"]}))["pollMachineApproval"]
    assert pending["status"] == "PENDING"
