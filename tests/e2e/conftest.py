"""The whole system: server with dispatcher, broker, a real `tama` daemon with its executor, the
real coding CLIs against a mock model server, and the agent calling `tama` inside its runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskmachine.daemon.approval import credentials_from
from taskmachine.daemon.config import MachineConfig, save_config
from taskmachine.daemon.daemon import Daemon
from tests.adapters.conftest import CLI_BIN
from tests.conftest import RunningServer
from tests.machines.support import Owner, connect_machine, eventually, owner
from tests.mockmodel.server import MockModelServer


@dataclass
class System:
    server: RunningServer
    who: Owner
    model: MockModelServer
    daemon: Daemon
    machine_id: str

    async def ok(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.server.ok(query, variables, self.who.token)

    async def agent(self, runtime: str, name: str = "Coder") -> str:
        async def runtime_id() -> Any:
            data = await self.ok(
                "query($w: ID!) { runtimes(workspaceId: $w) { id name available } }",
                {"w": self.who.workspace_id},
            )
            found = [r for r in data["runtimes"] if r["name"] == runtime and r["available"]]
            return found and found[0]["id"]

        rid = await eventually(runtime_id, within=30)
        await self.ok(
            "mutation($r: ID!) { setRuntimeEnabled(runtimeId: $r, enabled: true) { id } }",
            {"r": rid},
        )
        created = await self.ok(
            "mutation($w: ID!, $r: ID!, $n: String!, $m: String) { createAgent(workspaceId: $w, profile: {name: $n, defaultRuntimeId: $r, model: $m}) { id } }",
            {
                "w": self.who.workspace_id,
                "r": rid,
                "n": name,
                "m": "gpt-5.5" if runtime == "codex" else None,
            },
        )
        return str(created["createAgent"]["id"])


@pytest.fixture
async def system(
    machine_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[System]:
    async with MockModelServer() as model:
        monkeypatch.setenv("TASKMACHINE_HOME", str(tmp_path / "home"))
        monkeypatch.setenv(
            "TASKMACHINE_PROVIDER_OVERRIDES",
            json.dumps(
                {
                    "claude": {"base_url": model.url, "api_key": "test-key"},
                    "codex": {"base_url": model.openai_base_url, "api_key": "test-key"},
                }
            ),
        )
        who = await owner(machine_server)
        creds = await connect_machine(machine_server, who, "e2e-box")
        cfg = credentials_from(creds).apply_to(
            MachineConfig(
                execution_root=tmp_path / "work",
                state_dir=tmp_path / "state",
                runtime_paths={"claude": CLI_BIN / "claude", "codex": CLI_BIN / "codex"},
                heartbeat_interval_seconds=0.5,
            ),
            machine_server.url,
        )
        save_config(cfg)
        daemon = Daemon(cfg)
        task = asyncio.create_task(daemon.run(handle_signals=False))
        try:
            yield System(machine_server, who, model, daemon, creds["machineId"])
        finally:
            daemon.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
