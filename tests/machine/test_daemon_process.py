"""`tama daemon` as a process: end to end with the server, signals, the startup service files."""

from __future__ import annotations

import asyncio
import os
import plistlib
import signal
import sys
from pathlib import Path

import pytest

from taskmachine.daemon import exit_codes, startup
from taskmachine.daemon.config import config_path
from tests.conftest import RunningServer
from tests.daemon.support import REAL_CLIS, REPO
from tests.machine.cli import finish, start_tama, tama
from tests.machine.conftest import MakeMachine, eventually
from tests.machine.test_setup_status import _setup_approved
from tests.machines.support import owner

MACHINE = "query($id: ID!) { machine(id: $id) { online cliVersion executionRoot capacity runtimes { name available version } } }"


async def test_setup_then_daemon_brings_the_machine_online_with_its_runtimes(
    machine_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    who = await owner(machine_server)
    await _setup_approved(machine_server, who, "--name", "laptop")
    from taskmachine.daemon.config import load_config, save_config

    cfg = load_config()
    save_config(cfg.model_copy(update={"heartbeat_interval_seconds": 0.5}))
    monkeypatch.setenv("PATH", f"{REAL_CLIS}:{os.environ['PATH']}")
    process = await start_tama("daemon")
    try:

        async def online() -> bool:
            data = await machine_server.ok(MACHINE, {"id": str(cfg.machine_id)}, who.token)
            machine = data["machine"]
            return bool(machine["online"]) and any(r["available"] for r in machine["runtimes"])

        await eventually(online, within=30)
        machine = (await machine_server.ok(MACHINE, {"id": str(cfg.machine_id)}, who.token))[
            "machine"
        ]
        assert machine["executionRoot"] == str(cfg.execution_root)
        assert machine["capacity"] == cfg.max_concurrency
        runtimes = {r["name"]: (r["available"], r["version"]) for r in machine["runtimes"]}
        assert runtimes == {"claude": (True, "2.1.329"), "codex": (True, "0.169.0")}
    finally:
        # SIGTERM drains and exits 0, promptly.
        process.send_signal(signal.SIGTERM)
        done = await finish(process, within=10)
    assert done.code == exit_codes.OK, done.stderr
    assert "daemon stopped" in done.stderr


async def test_ctrl_c_stops_the_daemon_cleanly(make_machine: MakeMachine) -> None:
    machine = await make_machine()
    machine.save()
    process = await start_tama("daemon")
    await machine.wait_beats(2, within=20)
    process.send_signal(signal.SIGINT)
    done = await finish(process, within=10)
    assert done.code == exit_codes.OK, done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def no_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PATH with the basics but no systemctl (as in a container without a user manager)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("sh", "env"):
        found = Path("/usr/bin", tool) if Path("/usr/bin", tool).exists() else Path("/bin", tool)
        (folder / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(folder))
    return str(folder)


async def test_install_startup_writes_a_systemd_user_unit_and_uninstall_removes_it(
    make_machine: MakeMachine, no_systemctl: str, tmp_path: Path
) -> None:
    # Refused (and nothing written) while the machine is not set up.
    done = await tama("daemon", "install-startup")
    assert done.code == 1 and "run `tama setup`" in done.stderr
    unit = tmp_path / "xdg" / "systemd" / "user" / "tama.service"
    assert not unit.exists()

    machine = await make_machine()
    machine.save()
    done = await tama("daemon", "install-startup")
    assert done.code == 0, done.stderr
    assert f"wrote {unit}" in done.stdout
    assert (
        "systemctl --user is not usable here; start it yourself with: systemctl --user daemon-reload && systemctl --user enable --now tama.service"
        in done.stdout
    )
    text = unit.read_text()
    lines = text.splitlines()
    assert f"ExecStart={sys.executable} -m taskmachine.cli daemon" in lines
    assert f"Environment=PATH={no_systemctl}" in lines
    assert f"Environment=TASKMACHINE_HOME={config_path().parent}" in lines
    assert "Restart=always" in lines
    assert "RestartPreventExitStatus=77 78" in lines
    assert "WantedBy=default.target" in lines

    # Installing again rewrites it in place; uninstall removes it; a second uninstall is a no-op.
    assert (await tama("daemon", "install-startup")).code == 0
    done = await tama("daemon", "install-startup", "--uninstall")
    assert done.code == 0 and f"removed {unit}" in done.stdout
    assert not unit.exists()
    done = await tama("daemon", "install-startup", "--uninstall")
    assert done.code == 0 and "nothing to remove" in done.stdout


async def test_the_unit_runs_the_daemon_it_names(make_machine: MakeMachine) -> None:
    """The ExecStart line of the unit, run as written, is a working daemon."""
    machine = await make_machine()
    machine.save()
    unit = startup.systemd_unit(startup.daemon_argv(), {})
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = exec_start.removeprefix("ExecStart=").split(" ")
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    await machine.wait_beats(2, within=20)
    process.terminate()
    async with asyncio.timeout(10):
        assert await process.wait() == 0


def test_unit_quoting_and_the_launchd_agent(tmp_path: Path) -> None:
    unit = startup.systemd_unit(
        ["/opt/my tools/python", "-m", "taskmachine.cli", "daemon"], {"PATH": "/a b:/c%d"}
    )
    assert 'ExecStart="/opt/my tools/python" -m taskmachine.cli daemon' in unit
    assert 'Environment="PATH=/a b:/c%%d"' in unit
    plist = plistlib.loads(
        startup.launchd_plist(
            ["/usr/bin/python3", "-m", "taskmachine.cli", "daemon"],
            {"PATH": "/x"},
            tmp_path / "d.log",
        ).encode()
    )
    assert plist["Label"] == "org.taskmachine.tama"
    assert plist["ProgramArguments"] == ["/usr/bin/python3", "-m", "taskmachine.cli", "daemon"]
    assert plist["KeepAlive"] is True and plist["RunAtLoad"] is True
    assert plist["EnvironmentVariables"] == {"PATH": "/x"}
    with pytest.raises(startup.StartupError, match="supports Linux"):
        startup.install("win32")


async def test_run_daemon_script(make_machine: MakeMachine) -> None:
    script = str(REPO / "scripts" / "run-daemon")
    process = await asyncio.create_subprocess_exec(
        script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    done = await finish(process, within=10)
    assert done.code == 0
    assert "tama setup --api-url http://127.0.0.1:8000" in done.stdout

    machine = await make_machine()
    machine.save()
    process = await asyncio.create_subprocess_exec(
        script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    await machine.wait_beats(2, within=20)
    process.terminate()
    done = await finish(process, within=10)
    assert done.code == 0
