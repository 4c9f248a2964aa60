"""`tama setup` and `tama status` as subprocesses against a real server with a real broker."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskmachine.daemon import exit_codes
from taskmachine.daemon.config import config_path, load_config, save_config
from taskmachine.dispatcher.service import Dispatcher
from taskmachine.server import ServerOptions
from taskmachine.settings import Settings
from tests.conftest import RunningServer, start_server, stop_server
from tests.machine.cli import finish, start_tama, tama
from tests.machines.support import Owner, owner

APPROVE = (
    "mutation($c: String!, $w: [ID!]!) { approveMachine(code: $c, workspaceIds: $w) { status } }"
)
DENY = "mutation($c: String!) { denyMachine(code: $c) { status } }"
THIS = "{ thisMachine { id name } }"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _code_from(process: asyncio.subprocess.Process) -> tuple[str, str]:
    """Read setup's output until it shows the code; (user code, everything read so far)."""
    assert process.stdout is not None
    seen = ""
    async with asyncio.timeout(20):
        while (found := re.search(r"shows the code (\S+)\.", seen)) is None:
            line = await process.stdout.readline()
            assert line, f"setup ended before showing a code: {seen!r}"
            seen += line.decode()
    return found.group(1), seen


async def _setup_approved(server: RunningServer, who: Owner, *extra: str) -> tuple[str, str]:
    process = await start_tama("setup", "--api-url", server.url, "--no-browser", *extra)
    code, seen = await _code_from(process)
    await server.ok(APPROVE, {"c": code, "w": [who.workspace_id]}, who.token)
    done = await finish(process)
    assert done.code == exit_codes.OK, done.stderr
    return seen + done.stdout, done.stderr


async def test_setup_approved_writes_a_private_config_and_status_says_ok(
    machine_server: RunningServer,
) -> None:
    who = await owner(machine_server)
    out, _ = await _setup_approved(machine_server, who, "--name", "build-box")
    assert re.search(r"open:\n\n    http://\S+/machines/approve\?code=\w{4}-\w{4}\n", out), out
    assert "Approved: this machine is 'build-box'" in out
    path = config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_config()
    assert cfg.connected and cfg.machine_name == "build-box" and cfg.api_url == machine_server.url
    assert cfg.amqp_url is not None and cfg.amqp_url.startswith(f"amqp://machine-{cfg.machine_id}:")
    assert cfg.access_token_expires_at is not None
    assert cfg.access_token_expires_at > datetime.now(UTC)
    # The access token it saved is the machine's own.
    me = (await machine_server.ok(THIS, token=cfg.access_token))["thisMachine"]
    assert (me["id"], me["name"]) == (str(cfg.machine_id), "build-box")

    done = await tama("status")
    assert (done.code, done.stdout, done.stderr) == (0, "ok\n", "")


async def test_setup_denied_and_unreachable_change_nothing(machine_server: RunningServer) -> None:
    who = await owner(machine_server)
    process = await start_tama("setup", "--api-url", machine_server.url, "--no-browser")
    code, _ = await _code_from(process)
    await machine_server.ok(DENY, {"c": code}, who.token)
    done = await finish(process)
    assert done.code == exit_codes.SETUP_DENIED
    assert "the approval was denied; nothing was changed" in done.stderr
    assert not config_path().exists()

    url = f"http://127.0.0.1:{_closed_port()}"
    done = await tama("setup", "--api-url", url, "--no-browser")
    assert done.code == exit_codes.UNREACHABLE
    assert f"cannot reach {url}/graphql" in done.stderr and "--api-url" in done.stderr
    assert not config_path().exists()

    done = await tama("setup", "--api-url", "ftp://nope", "--no-browser")
    assert done.code == exit_codes.USAGE and "--api-url 'ftp://nope'" in done.stderr


@pytest.fixture
async def short_ttl_server(broker_settings: Settings) -> AsyncIterator[RunningServer]:
    settings = broker_settings.model_copy(update={"machine_approval_ttl_seconds": 1})
    running = await start_server(
        settings, ServerOptions(migrate_on_start=False, components=[Dispatcher()])
    )
    yield running
    await stop_server(running)


async def test_setup_expired(short_ttl_server: RunningServer) -> None:
    done = await tama("setup", "--api-url", short_ttl_server.url, "--no-browser", within=30)
    assert done.code == exit_codes.SETUP_EXPIRED, done.stderr
    assert "expired before anyone approved it; run `tama setup` again" in done.stderr
    assert not config_path().exists()


async def test_setup_keeps_local_settings_and_replaces_a_broken_file(
    machine_server: RunningServer, tmp_path: Path
) -> None:
    who = await owner(machine_server)
    path = config_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"execution_root": "/srv/work", "max_concurrency": 2}')
    path.chmod(0o600)
    await _setup_approved(machine_server, who)
    cfg = load_config()
    assert (cfg.execution_root, cfg.max_concurrency) == (Path("/srv/work"), 2)

    path.write_text("{broken")
    _, stderr = await _setup_approved(machine_server, who)
    assert "invalid JSON" in stderr and "setup will write a new config file" in stderr
    assert load_config().connected


async def test_status_refreshes_an_expired_access_token_and_rotates(
    machine_server: RunningServer,
) -> None:
    await _setup_approved(machine_server, await owner(machine_server))
    cfg = load_config()
    old_refresh = cfg.refresh_token
    # An access token the server no longer accepts, though the file says it is still good.
    save_config(cfg.model_copy(update={"access_token": "tm_expired_garbage"}))
    done = await tama("status")
    assert (done.code, done.stdout) == (0, "ok\n"), done.stderr
    rotated = load_config()
    assert rotated.refresh_token != old_refresh and rotated.access_token != "tm_expired_garbage"
    # Expired by the clock: refreshed before use, without asking the server first.
    past = datetime.now(UTC) - timedelta(minutes=5)
    save_config(rotated.model_copy(update={"access_token_expires_at": past}))
    done = await tama("status")
    assert (done.code, done.stdout) == (0, "ok\n"), done.stderr
    assert load_config().refresh_token != rotated.refresh_token
    assert stat.S_IMODE(config_path().stat().st_mode) == 0o600


async def test_status_names_what_failed(machine_server: RunningServer) -> None:
    await _setup_approved(machine_server, await owner(machine_server))
    good = load_config()

    # A dead refresh token (and a dead access token): run setup again, non-zero.
    save_config(good.model_copy(update={"access_token": "tm_bad", "refresh_token": "tm_bad"}))
    done = await tama("status")
    assert done.code == 1 and done.stdout == ""
    assert "api: the server refused this machine's refresh token" in done.stderr
    assert "run `tama setup` again" in done.stderr
    assert "broker:" not in done.stderr

    # A wrong broker password: the broker line says so; the API is fine.
    assert good.amqp_url is not None
    wrong = re.sub(r"(amqp://[^:]+:)[^@]+@", r"\1wrong@", good.amqp_url)
    save_config(good.model_copy(update={"amqp_url": wrong}))
    done = await tama("status")
    assert done.code == 1
    assert "broker: 127.0.0.1:5672/" in done.stderr
    assert f"refused machine-{good.machine_id}" in done.stderr
    assert "api:" not in done.stderr

    # Nothing listens at the API URL.
    save_config(good.model_copy(update={"api_url": f"http://127.0.0.1:{_closed_port()}"}))
    done = await tama("status")
    assert done.code == 1 and "api: cannot reach http://127.0.0.1:" in done.stderr


async def test_status_and_daemon_refuse_an_unusable_config() -> None:
    done = await tama("status")
    assert done.code == 1 and "run `tama setup`" in done.stderr
    path = config_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"max_concurrency": 2}))
    path.chmod(0o644)
    for args, code in ((("status",), 1), (("daemon",), exit_codes.CONFIG_INVALID)):
        done = await tama(*args)
        assert done.code == code
        assert (
            f"has mode 644 but holds credentials and must be private; run: chmod 600 {path}"
            in done.stderr
        )
    path.chmod(0o600)
    path.write_text("[1, 2")
    done = await tama("daemon")
    assert done.code == exit_codes.CONFIG_INVALID and "invalid JSON" in done.stderr
    path.write_text(json.dumps({"max_concurrency": 2}))
    done = await tama("daemon")
    assert (
        done.code == exit_codes.CONFIG_INVALID and "not set up yet; run `tama setup`" in done.stderr
    )
