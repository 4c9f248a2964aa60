"""Fixtures for the adapter tests: the real CLIs and a mock model server per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.mockmodel.server import MockModelServer

_REPO = Path(__file__).resolve().parents[2]
CLI_BIN = _REPO / ".tools" / "clis" / "node_modules" / ".bin"


def _find_cli(name: str) -> Path:
    local = CLI_BIN / name
    if local.exists():
        return local
    found = shutil.which(name)
    if found:
        return Path(found)
    pytest.fail(f"`{name}` is not installed: run scripts/install-clis (expected {local})")


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    return _find_cli("claude")


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    return _find_cli("codex")


@pytest.fixture
async def mock_model() -> AsyncIterator[MockModelServer]:
    async with MockModelServer() as server:
        yield server
