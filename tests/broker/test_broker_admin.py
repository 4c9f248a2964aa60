"""Machine broker users through the management API: create, rotate, remove, and bad input."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest
from aiormq.exceptions import AMQPConnectionError

from taskmachine.dispatcher.broker_admin import BrokerAdmin, BrokerAdminError, vhost_from_amqp_url
from taskmachine.settings import load_settings
from taskmachine.wire.topology import machine_username, open_machine_queues

from .conftest import MANAGEMENT_URL, ConnectAs, Machine, MakeMachine, amqp_url


async def _user_status(management: httpx.AsyncClient, username: str) -> int:
    return (await management.get(f"/users/{username}")).status_code


async def _connection_listed(broker_admin: BrokerAdmin, machine: Machine) -> list[str]:
    # The management statistics lag behind a new connection by up to a few seconds.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if names := await broker_admin.machine_connections(machine.id):
            return names
        await asyncio.sleep(0.2)
    raise AssertionError("the machine's open connection never appeared in the management API")


async def test_removed_machine_is_cut_off_within_five_seconds(
    broker_admin: BrokerAdmin,
    management: httpx.AsyncClient,
    make_machine: MakeMachine,
    connect_as: ConnectAs,
    vhost: str,
) -> None:
    a, b = await make_machine(), await make_machine()
    connection_a = await connect_as(a)
    connection_b = await connect_as(b)
    assert len(await _connection_listed(broker_admin, a)) == 1
    closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def on_close(_: object, exc: BaseException | None = None) -> None:
        if not closed.done():
            closed.set_result(exc)

    connection_a.close_callbacks.add(on_close)

    started = time.monotonic()
    await broker_admin.remove_machine_user(a.id)
    reason = await asyncio.wait_for(closed, 5)
    cut_off_after = time.monotonic() - started
    print(f"\nconnection closed {cut_off_after * 1000:.0f} ms after remove_machine_user")

    assert "CONNECTION_FORCED" in str(reason)
    with pytest.raises(AMQPConnectionError, match="ACCESS_REFUSED"):
        await aio_pika.connect(amqp_url(a.username, a.password, vhost), timeout=5)
    assert await _user_status(management, a.username) == 404
    # Removing again is harmless; the other machine was not touched.
    await broker_admin.remove_machine_user(a.id)
    assert await _user_status(management, b.username) == 200
    await open_machine_queues(await connection_b.channel(), b.id)


async def test_create_is_idempotent_and_rotation_swaps_the_password(
    broker_admin: BrokerAdmin, make_machine: MakeMachine, connect_as: ConnectAs, vhost: str
) -> None:
    a = await make_machine()
    await broker_admin.create_machine_user(a.id, a.password)
    await (await connect_as(a)).close()

    old_password, a.password = a.password, secrets.token_urlsafe(24)
    await broker_admin.rotate_machine_password(a.id, a.password)
    await (await connect_as(a)).close()
    with pytest.raises(AMQPConnectionError, match="ACCESS_REFUSED"):
        await aio_pika.connect(amqp_url(a.username, old_password, vhost), timeout=5)


async def test_rotating_a_missing_machine_fails_and_creates_nothing(
    broker_admin: BrokerAdmin, management: httpx.AsyncClient
) -> None:
    machine_id = str(uuid.uuid4())
    with pytest.raises(BrokerAdminError) as error:
        await broker_admin.rotate_machine_password(machine_id, "new-password")
    assert error.value.status == 404
    assert await _user_status(management, machine_username(machine_id)) == 404


@pytest.mark.parametrize(
    ("machine_id", "password", "message"),
    [
        ("not-a-uuid", "pw", "is not a UUID"),
        ("8A1D3F4E-5B6C-4D7E-8F90-A1B2C3D4E5F6", "pw", "canonical form"),
        ("../guest", "pw", "is not a UUID"),
        ("0c9d8e7f-6a5b-4c3d-9e2f-1a0b9c8d7e6f", "", "non-empty"),
    ],
)
async def test_bad_input_is_refused_before_touching_the_broker(
    machine_id: str,
    password: str,
    message: str,
    broker_admin: BrokerAdmin,
    management: httpx.AsyncClient,
) -> None:
    for call in (broker_admin.create_machine_user, broker_admin.rotate_machine_password):
        with pytest.raises(ValueError, match=message):
            await call(machine_id, password)
    if password:
        with pytest.raises(ValueError, match=message):
            await broker_admin.remove_machine_user(machine_id)
    # Nothing was created under any spelling of that id.
    assert not [name for name in await _all_usernames(management) if machine_id in name]


async def _all_usernames(management: httpx.AsyncClient) -> set[str]:
    return {user["name"] for user in (await management.get("/users")).json()}


async def test_unknown_vhost_is_an_error_and_leaves_no_user(management: httpx.AsyncClient) -> None:
    machine_id = str(uuid.uuid4())
    async with BrokerAdmin(MANAGEMENT_URL, vhost=f"no-such-vhost-{machine_id}") as admin:
        with pytest.raises(BrokerAdminError) as error:
            await admin.create_machine_user(machine_id, "pw")
    assert error.value.status == 404
    assert "Not Found" in error.value.reason
    assert await _user_status(management, machine_username(machine_id)) == 404


async def test_api_errors_carry_status_and_reason() -> None:
    async with BrokerAdmin(MANAGEMENT_URL.replace("guest:guest", "guest:wrong")) as admin:
        with pytest.raises(BrokerAdminError) as error:
            await admin.machine_connections(str(uuid.uuid4()))
    assert error.value.status == 401
    assert "Login failed" in error.value.reason
    assert "wrong" not in str(error.value)

    async with BrokerAdmin("http://guest:guest@127.0.0.1:9", timeout=2) as admin:
        with pytest.raises(BrokerAdminError) as error:
            await admin.create_machine_user(str(uuid.uuid4()), "pw")
    assert error.value.status is None


@pytest.fixture
async def default_vhost_machine() -> AsyncIterator[tuple[BrokerAdmin, str]]:
    machine_id = str(uuid.uuid4())
    admin = BrokerAdmin.from_settings(load_settings())
    try:
        yield admin, machine_id
    finally:
        await admin.remove_machine_user(machine_id)
        await admin.aclose()


async def test_default_vhost_gets_exactly_the_machine_permissions(
    default_vhost_machine: tuple[BrokerAdmin, str], management: httpx.AsyncClient
) -> None:
    admin, machine_id = default_vhost_machine
    assert admin.vhost == "/"
    await admin.create_machine_user(machine_id, "pw")
    username = machine_username(machine_id)

    user = (await management.get(f"/users/{username}")).json()
    assert user["tags"] == []
    permissions = (await management.get(f"/permissions/%2F/{username}")).json()
    assert {k: permissions[k] for k in ("configure", "write", "read")} == {
        "configure": "^$",
        "write": "^tama\\.events$",
        "read": f"^tama\\.machine\\.{machine_id}\\.(jobs|control)$",
    }
    topic = (await management.get(f"/topic-permissions/%2F/{username}")).json()
    assert [(t["exchange"], t["write"], t["read"]) for t in topic] == [
        ("tama.events", f"^machine\\.{machine_id}\\.", "^$")
    ]


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "/"),
        ("amqp://guest:guest@127.0.0.1:5672", "/"),
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "/"),
        ("amqps://u:p@broker.example/tama", "tama"),
        ("amqp://u:p@host/team%2Fa", "team/a"),
    ],
)
def test_vhost_comes_from_the_amqp_url(url: str, vhost: str) -> None:
    assert vhost_from_amqp_url(url) == vhost
