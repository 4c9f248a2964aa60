"""`tama runtimes` and `tama version` through the installed console script, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import taskmachine
from taskmachine.daemon.config import MachineConfig, save_config
from tests.daemon.conftest import FakeTool
from tests.daemon.support import REAL_CLIS, TAMA

SYSTEM_PATH = "/usr/bin:/bin"


def _tama(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    # The fixture already points TASKMACHINE_HOME, XDG_CONFIG_HOME and HOME at tmp dirs.
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [str(TAMA), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_runtimes_json_lists_the_real_clis(real_clis: Path) -> None:
    done = _tama("runtimes", "--json", path=f"{real_clis}:{SYSTEM_PATH}")
    assert done.returncode == 0, done.stderr
    runtimes = {item["name"]: item for item in json.loads(done.stdout)["runtimes"]}
    assert set(runtimes) == {"claude", "codex"}
    for name in ("claude", "codex"):
        item = runtimes[name]
        assert item["available"] is True
        assert item["reason"] is None
        assert item["path"] == str(REAL_CLIS / name)
        assert item["version"]
        assert item["models"]
        assert all(model["reasoning_levels"] for model in item["models"])


def test_runtimes_exits_zero_when_tools_are_missing() -> None:
    done = _tama("runtimes", "--json", path=SYSTEM_PATH)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "runtimes": [
            {
                "name": name,
                "provider": provider,
                "path": None,
                "version": None,
                "models": [],
                "available": False,
                "reason": "not on PATH",
            }
            for name, provider in (("claude", "anthropic"), ("codex", "openai"))
        ]
    }

    table = _tama("runtimes", path=SYSTEM_PATH)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["claude", "missing", "not", "on", "PATH"]
    assert lines[-1].split() == ["codex", "missing", "not", "on", "PATH"]


def test_runtimes_table_shows_versions_and_models(fake_tool: FakeTool, fake_bin: Path) -> None:
    fake_tool("codex", 'echo "codex-cli 0.42.0"\n')
    done = _tama("runtimes", path=f"{fake_bin}:{REAL_CLIS}:{SYSTEM_PATH}")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "claude    available  " in out and str(REAL_CLIS / "claude") in out
    assert "    opus " in out and "low, medium, high" in out
    assert (
        f"codex     missing    too old (found 0.42.0, need ≥ 0.100.0)  (at {fake_bin / 'codex'})"
        in out
    )


def test_runtimes_uses_paths_from_the_config_file(fake_tool: FakeTool, tmp_path: Path) -> None:
    tool = fake_tool("claude-custom", 'echo "boom" >&2; exit 1\n')
    save_config(MachineConfig(runtime_paths={"claude": tool}))
    done = _tama("runtimes", "--json", path=SYSTEM_PATH)
    assert done.returncode == 0, done.stderr
    claude = json.loads(done.stdout)["runtimes"][0]
    assert (claude["path"], claude["reason"]) == (str(tool), "does not run: boom")


def test_runtimes_with_a_corrupt_config_fails_clearly(machine_home: Path) -> None:
    machine_home.mkdir(mode=0o700)
    path = machine_home / "config.json"
    path.write_text('{"runtime_paths": ')
    path.chmod(0o600)
    done = _tama("runtimes", path=SYSTEM_PATH)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"tama: {path}: invalid JSON at line 1 column 19: Expecting value"
    )


def test_version() -> None:
    done = _tama("version", path=SYSTEM_PATH)
    assert (done.returncode, done.stdout) == (0, f"tama {taskmachine.__version__}\n")


def test_cli_does_not_import_the_server_side() -> None:
    forbidden = (
        "taskmachine.models",
        "taskmachine.loop",
        "taskmachine.dispatcher",
        "taskmachine.schema",
        "taskmachine.resolvers",
        "taskmachine.server",
        "sqlalchemy",
        "aiosqlite",
        "strawberry",
        "starlette",
        "uvicorn",
    )
    script = (
        "import sys, taskmachine.cli.app, taskmachine.daemon.detect, taskmachine.daemon.config\n"
        "import taskmachine.daemon.daemon, taskmachine.daemon.executor.executor\n"
        f"bad = [m for m in sys.modules if m.startswith({forbidden!r})]\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""
