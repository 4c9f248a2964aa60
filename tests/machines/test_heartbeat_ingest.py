"""Heartbeat ingest: runtime lists sent only when they change (a digest otherwise), batches
acknowledged together, failures redelivered, and ingest surviving a lost broker connection."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from taskmachine.dispatcher import ingest
from taskmachine.dispatcher.service import Dispatcher
from taskmachine.server import ServerOptions
from taskmachine.settings import Settings
from taskmachine.wire import topology
from taskmachine.wire.messages import runtimes_digest
from tests.conftest import RunningServer, _management, start_server, stop_server
from tests.machines.support import FakeDaemon, Owner, connect_machine, eventually, owner, runtime

FLEET = """query($w: ID!) { machines(workspaceId: $w) { edges { node {
  id online lastHeartbeatAt runtimes { id name version enabled ready } } } } }"""
ENABLE = "mutation($r: ID!) { setRuntimeEnabled(runtimeId: $r, enabled: true) { ready } }"


async def _machine(server: RunningServer, who: Owner) -> dict[str, Any]:
    data = await server.ok(FLEET, {"w": who.workspace_id}, who.token)
    node: dict[str, Any] = data["machines"]["edges"][0]["node"]
    return node


def _runtimes(machine: dict[str, Any]) -> dict[str, tuple[str, bool, bool]]:
    return {r["name"]: (r["version"], r["enabled"], r["ready"]) for r in machine["runtimes"]}


async def _beats_after(server: RunningServer, who: Owner, daemon: FakeDaemon, **beat: Any) -> Any:
    """Beat until the server shows a heartbeat newer than the one it showed before."""
    before = (await _machine(server, who))["lastHeartbeatAt"]

    async def newer() -> Any:
        await daemon.beat(**beat)
        machine = await _machine(server, who)
        return machine if machine["online"] and machine["lastHeartbeatAt"] != before else None

    return await eventually(newer)


async def test_digest_beats_keep_the_runtimes_across_a_server_restart(
    broker_settings: Settings,
) -> None:
    pair = [runtime("claude"), runtime("codex", "0.169.0")]
    listed = runtimes_digest(pair)
    options = ServerOptions(migrate_on_start=False, components=[Dispatcher()])
    server = await start_server(broker_settings, options)
    try:
        who = await owner(server)
        creds = await connect_machine(server, who)
        async with FakeDaemon(creds) as daemon:
            machine = await _beats_after(server, who, daemon, runtimes=pair, digest=listed)
            claude = next(r for r in machine["runtimes"] if r["name"] == "claude")
            await server.ok(ENABLE, {"r": claude["id"]}, who.token)
            machine = await _beats_after(server, who, daemon, runtimes=None, digest=listed)
            assert _runtimes(machine) == {
                "claude": ("2.1.329", True, True),
                "codex": ("0.169.0", False, False),
            }
    finally:
        await stop_server(server)

    # A new server process knows the list by the digest stored with the machine.
    server = await start_server(broker_settings, options)
    try:
        async with FakeDaemon(creds) as daemon:
            machine = await _beats_after(server, who, daemon, runtimes=None, digest=listed)
            assert _runtimes(machine)["claude"] == ("2.1.329", True, True)
            # A digest the server never got the list for: online, the rows stand as they were.
            machine = await _beats_after(server, who, daemon, runtimes=None, digest="0" * 32)
            assert set(_runtimes(machine)) == {"claude", "codex"}
            # The daemon's next list is what counts: codex uninstalled drops off; claude stays
            # enabled.
            only = [runtime("claude")]
            await daemon.beat(runtimes=only, digest=runtimes_digest(only))

            async def codex_gone() -> Any:
                machine = await _machine(server, who)
                return machine if set(_runtimes(machine)) == {"claude"} else None

            machine = await eventually(codex_gone)
            assert _runtimes(machine)["claude"] == ("2.1.329", True, True)
            # An older daemon sends its full list and no digest, every beat: that still works.
            machine = await _beats_after(server, who, daemon, runtimes=pair)
            assert _runtimes(machine) == {
                "claude": ("2.1.329", True, True),
                "codex": ("0.169.0", False, False),
            }
    finally:
        await stop_server(server)


async def test_a_digest_beat_batched_with_the_list_it_stands_for(
    machine_server: RunningServer,
) -> None:
    # Both beats in one batch: the newest (digest only) takes its list from the older one.
    machine_server.settings.__dict__["heartbeat_batch_seconds"] = 1.0
    who = await owner(machine_server)
    creds = await connect_machine(machine_server, who)
    only = [runtime("claude")]
    async with FakeDaemon(creds) as daemon:
        await daemon.beat(runtimes=only, digest=runtimes_digest(only))
        await daemon.beat(runtimes=None, digest=runtimes_digest(only))

        async def listed() -> Any:
            machine = await _machine(machine_server, who)
            return machine["online"] and set(_runtimes(machine)) == {"claude"}

        await eventually(listed)


async def test_bad_beats_inside_a_batch_are_dead_lettered_and_the_rest_acked(
    machine_server: RunningServer,
) -> None:
    machine_server.settings.__dict__["heartbeat_batch_seconds"] = 0.5
    who = await owner(machine_server)
    creds = await connect_machine(machine_server, who)
    broker = machine_server.state.services["broker"]
    dead = await broker.channel.declare_queue(
        topology.DEAD_QUEUE, durable=True, arguments=topology.queue_arguments("dead")
    )
    async with FakeDaemon(creds) as daemon:
        await daemon.beat([runtime()])
        await daemon.send(b"{not json")
        await daemon.beat([runtime()])
        await daemon.send(b'{"v": 1}')
        await daemon.beat([runtime()])
        reasons: list[str] = []

        async def two_dead() -> Any:
            message = await dead.get(fail=False)
            if message is not None:
                reasons.append(message.headers["x-death"][0]["reason"])
                await message.ack()
            return len(reasons) >= 2

        await eventually(two_dead)
        assert (await _machine(machine_server, who))["online"]
    assert reasons == ["rejected"] * 2
    # The good ones were acknowledged with the batch: none comes back, none is dead-lettered.
    await asyncio.sleep(1.0)
    assert await dead.get(fail=False) is None


async def test_a_batch_that_fails_to_write_is_delivered_again(
    machine_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ingest.apply_heartbeats
    failures = [RuntimeError("database went away")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    monkeypatch.setattr(ingest, "apply_heartbeats", flaky)
    monkeypatch.setattr(ingest, "RETRY_PAUSE_SECONDS", 0.1)
    who = await owner(machine_server)
    creds = await connect_machine(machine_server, who)
    async with FakeDaemon(creds) as daemon:
        await daemon.beat([runtime()])  # one beat only: it must come back after the failure

        async def online() -> Any:
            return (await _machine(machine_server, who))["online"]

        await eventually(online)
    assert not failures


async def test_ingest_goes_on_after_the_broker_drops_the_server_connection(
    machine_server: RunningServer,
) -> None:
    who = await owner(machine_server)
    creds = await connect_machine(machine_server, who)
    async with FakeDaemon(creds) as daemon:
        await _beats_after(machine_server, who, daemon, runtimes=[runtime()])
        api, auth = _management()
        vhost = quote(machine_server.settings.amqp_url.rsplit("/", 1)[1], safe="")
        async with httpx.AsyncClient(base_url=api, auth=auth, timeout=10) as client:

            async def server_connections() -> Any:
                listed = (await client.get(f"/vhosts/{vhost}/connections")).json()
                return [c["name"] for c in listed if c["user"] == "guest"]

            for name in await eventually(server_connections):
                await client.delete(f"/connections/{quote(name, safe='')}")
        # The robust connection comes back (after its 5 s pause) and heartbeats flow again.
        await _beats_after(machine_server, who, daemon, runtimes=[runtime()])
