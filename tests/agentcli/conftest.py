"""An agent's run for real: a server with the dispatcher, a machine, an agent assigned a task,
and the job (with its run token) read from the machine's queue. `tama` runs as a subprocess
with the run's environment, as the executor starts it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.dispatch.support import Fleet, JobInbox, assign, new_task, ready_fleet

TAMA = Path(sys.executable).with_name("tama")


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The commands are plain GraphQL clients; the server's two backends are tested elsewhere."""
    return str(request.param)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def base_env(home: Path) -> dict[str, str]:
    """The daemon's executor scrubs TASKMACHINE_* before adding the run's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMACHINE_")}
    env["HOME"] = str(home)
    env["TASKMACHINE_HOME"] = str(home / ".taskmachine")
    return env


async def tama(
    *args: str, env: dict[str, str], stdin: str | None = None, cwd: Path | None = None
) -> Result:
    assert TAMA.exists(), f"{TAMA} is missing: pip install -e . in the virtualenv"
    proc = await asyncio.create_subprocess_exec(
        str(TAMA),
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), 30
    )
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@dataclass
class AgentRun:
    server: RunningServer
    fleet: Fleet
    task_id: str
    job: dict[str, Any]
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    async def tama(self, *args: str, stdin: str | None = None, **overrides: str) -> Result:
        return await tama(*args, env={**self.env, **overrides}, stdin=stdin, cwd=self.home)

    async def owner(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask the API as the workspace's owner, as a person reading the records would."""
        return await self.server.ok(query, variables, self.fleet.who.token)


def run_env(home: Path, server: RunningServer, job: dict[str, Any]) -> dict[str, str]:
    return {
        **base_env(home),
        "TASKMACHINE_RUN_TOKEN": job["run_token"],
        "TASKMACHINE_API_URL": server.url,
        "TASKMACHINE_RUN_ID": job["run_id"],
    }


@pytest.fixture
async def agent_run(machine_server: RunningServer, tmp_path: Path) -> AsyncIterator[AgentRun]:
    """An agent assigned a task; its run dispatched to the machine (the token is valid now)."""
    fleet = await ready_fleet(machine_server)
    try:
        inbox = await JobInbox(fleet).open()
        task_id = await new_task(machine_server, fleet, title="Fix the login bug")
        await assign(machine_server, fleet, task_id)
        yield await _dispatched(machine_server, fleet, inbox, task_id, tmp_path)
    finally:
        await fleet.daemon.__aexit__()


CREATE_CHAT = (
    'mutation($w: ID!, $a: ID!) { createChat(workspaceId: $w, agentId: $a, title: "Help") { id } }'
)
SEND = "mutation($c: ID!, $b: String!) { sendChatMessage(chatId: $c, body: $b) { id } }"


@pytest.fixture
async def chat_run(machine_server: RunningServer, tmp_path: Path) -> AsyncIterator[AgentRun]:
    """A person's chat message ran the chat's agent; `task_id` holds the chat id here."""
    fleet = await ready_fleet(machine_server)
    try:
        inbox = await JobInbox(fleet).open()
        chat = await machine_server.ok(
            CREATE_CHAT, {"w": fleet.who.workspace_id, "a": fleet.agent_id}, fleet.who.token
        )
        chat_id = chat["createChat"]["id"]
        await machine_server.ok(
            SEND, {"c": chat_id, "b": "What does the login bug look like?"}, fleet.who.token
        )
        yield await _dispatched(machine_server, fleet, inbox, chat_id, tmp_path)
    finally:
        await fleet.daemon.__aexit__()


async def _dispatched(
    server: RunningServer, fleet: Fleet, inbox: JobInbox, subject_id: str, tmp_path: Path
) -> AgentRun:
    job, message = await inbox.next()
    await message.ack()
    assert job["subject_id"] == subject_id
    home = tmp_path / "run-home"
    home.mkdir()
    return AgentRun(server, fleet, subject_id, job, home, run_env(home, server, job))
