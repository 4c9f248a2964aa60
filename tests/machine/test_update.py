"""Updates for real: wheels of this project built into a local folder, installed with pip into a
throw-away virtualenv that runs tama from an installed wheel (not from this checkout).

The virtualenv sees the outer one's packages through a .pth line (the dependencies), so pip
installs offline from the wheel folder with --no-index.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import sysconfig
import uuid
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from packaging.version import Version

import taskmachine
from taskmachine.daemon import exit_codes
from taskmachine.daemon.config import save_config
from taskmachine.wire.control import UpdateRequest
from taskmachine.wire.topology import CONTROL_EXCHANGE, machine_routing_key
from tests.daemon.support import REPO
from tests.machine.cli import finish, start_tama, tama
from tests.machine.conftest import MakeMachine

CURRENT = taskmachine.__version__
_v = Version(CURRENT)
NEWER = f"{_v.major}.{_v.minor}.{_v.micro + 1}"


def _build(source: Path, version: str, out: Path) -> None:
    tree = source / version
    shutil.copytree(
        REPO / "taskmachine",
        tree / "taskmachine",
        ignore=shutil.ignore_patterns("__pycache__", "static"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    init = tree / "taskmachine" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{CURRENT}"', f'"{version}"'))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with wheels of this project at the current and at a newer version."""
    root = tmp_path_factory.mktemp("release")
    out = root / "wheels"
    for version in (CURRENT, NEWER):
        _build(root / "src", version, out)
    assert sorted(p.name.split("-")[1] for p in out.glob("*.whl")) == sorted([CURRENT, NEWER])
    return out


@dataclass
class Env:
    python: str

    def version(self) -> str:
        done = subprocess.run(
            [self.python, "-I", "-c", "import taskmachine; print(taskmachine.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()


@pytest.fixture
def env(tmp_path: Path, wheels: Path) -> Env:
    """A fresh virtualenv with tama CURRENT installed from its wheel."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
    )
    python = str(venv / "bin" / "python")
    inner = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The outer site-packages as a plain path: dependencies and pip, but not its .pth files,
    # so the editable install of this checkout stays out of the way.
    Path(inner, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob(f"taskmachine-{CURRENT}-*.whl"))
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        cwd=tmp_path,
    )
    installed = Env(python)
    assert installed.version() == CURRENT
    return installed


async def test_tama_update_by_hand(env: Env, wheels: Path) -> None:
    save_config_with(update_find_links=str(wheels))
    done = await tama("update", "9.9.9", python=env.python)
    assert done.code == 1
    assert "update failed: pip exit 1:" in done.stderr and "taskmachine==9.9.9" in done.stderr
    assert env.version() == CURRENT

    done = await tama("update", "not a version", python=env.python)
    assert done.code == 1 and "'not a version' is not a version number" in done.stderr

    done = await tama("update", NEWER, python=env.python, within=120)
    assert done.code == 0, done.stderr
    assert f"tama updated: {CURRENT} → {NEWER}" in done.stdout
    assert "restart `tama daemon` to run the new version" in done.stdout
    assert env.version() == NEWER


def save_config_with(**values: object) -> None:
    from taskmachine.daemon.config import MachineConfig

    save_config(MachineConfig.model_validate(values))


async def _request_update(
    admin_connection: AbstractConnection, machine_id: uuid.UUID, version: str
) -> None:
    body = UpdateRequest(request_id=uuid.uuid4(), target_version=version).to_body()
    async with admin_connection.channel() as channel:
        exchange = await channel.get_exchange(CONTROL_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(body), routing_key=machine_routing_key(str(machine_id))
        )


async def test_the_daemon_updates_itself_on_request_and_exits_75(
    env: Env,
    wheels: Path,
    make_machine: MakeMachine,
    admin_connection: AbstractConnection,
) -> None:
    machine = await make_machine()
    machine.save(update_find_links=str(wheels))
    process = await start_tama("daemon", "--log-json", python=env.python)
    try:
        first = await machine.wait_for(lambda beat: True, within=20)
        assert first.cli_version == CURRENT and first.update_status is None

        # A release that does not exist: the failure is reported and the daemon goes on.
        await _request_update(admin_connection, machine.id, "9.9.9")
        failed = await machine.wait_for(
            lambda beat: (beat.update_status or "").startswith("failed: "), within=60
        )
        assert "9.9.9" in (failed.update_status or "")
        assert len(failed.update_status or "") <= 64
        assert process.returncode is None

        await _request_update(admin_connection, machine.id, NEWER)
        updating = await machine.wait_for(
            lambda beat: beat.update_status == f"updating to {NEWER}", within=20
        )
        assert updating.cli_version == CURRENT
        last = await machine.wait_for(
            lambda beat: beat.update_status == f"installed {NEWER}; restarting", within=120
        )
        assert last.cli_version == CURRENT  # still the old code, about to exit
        done = await finish(process, within=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert done.code == exit_codes.RESTART_FOR_UPDATE, done.stderr
    assert env.version() == NEWER
    messages = [
        json.loads(line)["msg"] for line in done.stderr.splitlines() if line.startswith("{")
    ]
    assert f"updated {CURRENT} → {NEWER}; restarting" in messages

    # What the startup service does next: start it again, now on the new release.
    process = await start_tama("daemon", python=env.python)
    try:
        restarted = await machine.wait_for(lambda beat: beat.cli_version == NEWER, within=20)
        assert restarted.update_status is None and restarted.seq == 0
    finally:
        process.terminate()
        done = await finish(process, within=15)
    assert done.code == exit_codes.OK
    await asyncio.sleep(0)
