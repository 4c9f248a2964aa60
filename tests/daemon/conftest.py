"""Fixtures for the machine side: a private TASKMACHINE_HOME and fake CLIs as shell scripts."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon.support import REAL_CLIS


@pytest.fixture(autouse=True)
def machine_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own ~/.taskmachine, legacy config dir and HOME."""
    home = tmp_path / "tmhome"
    monkeypatch.setenv("TASKMACHINE_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    (tmp_path / "userhome").mkdir()
    yield home


@pytest.fixture
def real_clis() -> Path:
    """The real claude and codex installed by scripts/install-clis; fails loudly if absent."""
    for name in ("claude", "codex"):
        tool = REAL_CLIS / name
        assert os.access(tool, os.X_OK), f"{tool} is missing: run scripts/install-clis"
    return REAL_CLIS


FakeTool = Callable[[str, str], Path]


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    folder = tmp_path / "fakebin"
    folder.mkdir()
    return folder


@pytest.fixture
def fake_tool(fake_bin: Path) -> FakeTool:
    """Write an executable /bin/sh script named `name` into fake_bin with the given body."""

    def write(name: str, body: str) -> Path:
        path = fake_bin / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return path

    return write
