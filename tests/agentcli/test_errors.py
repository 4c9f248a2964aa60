"""Exit codes a model can act on, one clear line on stderr, `{"error": …}` with --json, and
nothing changed by a command that fails."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from tests.agentcli.conftest import AgentRun, base_env, tama
from tests.dispatch.support import new_task
from tests.machines.support import owner

COMMENTS = "query($t: ID!) { comments(taskId: $t) { totalCount } }"
TASK = "query($t: ID!) { task(id: $t) { status summary } }"


async def comment_count(run: AgentRun) -> int:
    return int((await run.owner(COMMENTS, {"t": run.task_id}))["comments"]["totalCount"])


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tama: ")
    return lines[0]


async def test_outside_a_run_says_so(tmp_path: Path) -> None:
    result = await tama("tasks", "comment", "hello", env=base_env(tmp_path))
    assert result.code == 3
    assert (
        one_line(result.stderr)
        == "tama: not inside a Task Machine run: TASKMACHINE_RUN_TOKEN is not set"
    )
    env = {**base_env(tmp_path), "TASKMACHINE_RUN_TOKEN": "tm_run_x"}
    as_json = await tama("memory", "show", "--json", env=env)
    assert as_json.code == 3
    assert as_json.json() == {
        "error": {
            "code": "NOT_IN_RUN",
            "message": "not inside a Task Machine run: TASKMACHINE_API_URL is not set",
        }
    }


async def test_an_unreachable_server_exits_5(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **base_env(tmp_path),
        "TASKMACHINE_RUN_TOKEN": "tm_run_x",
        "TASKMACHINE_API_URL": f"http://127.0.0.1:{port}",
    }
    result = await tama("tasks", "status", "done", "--json", env=env)
    assert result.code == 5
    assert result.json()["error"]["code"] == "UNREACHABLE"
    assert "retry in a few seconds" in one_line(result.stderr)


async def test_bad_input_exits_2_and_changes_nothing(agent_run: AgentRun, tmp_path: Path) -> None:
    cases: list[tuple[tuple[str, ...], str]] = [
        (("tasks", "comment", "   "), "the comment is empty"),
        (("tasks", "comment"), "give the comment as an argument"),
        (
            ("tasks", "comment", "hi", "--file", str(tmp_path / "missing.md")),
            "either as an argument or with --file",
        ),
        (("tasks", "summary", "--file", str(tmp_path / "missing.md")), "cannot read"),
        (("tasks", "summary", "-"), "the summary is empty"),  # stdin is /dev/null
        (("tasks", "comment", "--jsno"), "no such option: --jsno"),
        (
            ("tasks", "status", "finished"),
            "unknown status 'finished': use one of backlog, todo, in-progress",
        ),
        (("tasks", "comment", "x", "--task", "not-an-id"), "taskId"),
    ]
    results = await asyncio.gather(*(agent_run.tama(*args) for args, _ in cases))
    for (args, expected), result in zip(cases, results, strict=True):
        assert result.code == 2, (args, result)
        assert expected in one_line(result.stderr), (args, result.stderr)
        assert "fix the input" in result.stderr
    huge = await agent_run.tama("tasks", "comment", "-", stdin="x" * 1_100_000)
    assert huge.code == 2 and "shorten the text" in one_line(huge.stderr)
    as_json = await agent_run.tama("tasks", "status", "finished", "--json")
    assert as_json.code == 2 and as_json.json()["error"]["code"] == "BAD_USER_INPUT"
    # A bad option is the CLI's own usage error: exit 2 as well.
    assert (await agent_run.tama("tasks", "status", "done", "--colour")).code == 2
    assert await comment_count(agent_run) == 0
    assert (await agent_run.owner(TASK, {"t": agent_run.task_id}))["task"] == {
        "status": "TODO",
        "summary": None,
    }


async def test_a_viewer_agent_may_read_but_not_write(agent_run: AgentRun) -> None:
    await agent_run.owner(
        "mutation($a: ID!) { updateAgent(id: $a, profile: {role: VIEWER}) { role } }",
        {"a": agent_run.fleet.agent_id},
    )
    assert (await agent_run.tama("tasks", "show")).code == 0
    denied = await agent_run.tama("tasks", "comment", "I should not be able to say this.", "--json")
    assert denied.code == 3
    assert denied.json()["error"]["code"] == "FORBIDDEN"
    assert "your agent's role does not allow this; do not retry" in one_line(denied.stderr)
    assert (await agent_run.tama("tasks", "status", "done")).code == 3
    assert await comment_count(agent_run) == 0
    assert (await agent_run.owner(TASK, {"t": agent_run.task_id}))["task"]["status"] == "TODO"


async def test_an_ended_runs_token_is_refused(agent_run: AgentRun) -> None:
    assert (await agent_run.tama("tasks", "comment", "Starting.")).code == 0
    cancelled = await agent_run.owner(
        "mutation($r: ID!) { cancelRun(id: $r) { status } }", {"r": agent_run.job["run_id"]}
    )
    assert cancelled["cancelRun"]["status"] == "CANCELLED"
    refused = await agent_run.tama("tasks", "comment", "Still here?", "--json")
    assert refused.code == 3
    assert refused.json()["error"]["code"] == "UNAUTHENTICATED"
    assert "the run has ended or was cancelled; make no more tama calls" in one_line(refused.stderr)
    assert await comment_count(agent_run) == 1


async def test_nothing_outside_the_runs_workspace(agent_run: AgentRun) -> None:
    stranger = await owner(agent_run.server, "stranger@example.com")
    other: Any = type("F", (), {"who": stranger})()
    foreign_task = await new_task(agent_run.server, other, title="Someone else's secret")
    for args in (
        ("tasks", "show", foreign_task),
        ("tasks", "comment", "hi", "--task", foreign_task),
    ):
        result = await agent_run.tama(*args, "--json")
        assert result.code == 4, (args, result)
        assert result.json()["error"]["code"] == "NOT_FOUND"
        assert "Someone else's secret" not in result.stdout + result.stderr
    missing_number = await agent_run.tama("tasks", "show", "#999")
    assert missing_number.code == 4
    assert "check the id" in one_line(missing_number.stderr)
    foreign = await agent_run.server.ok(COMMENTS, {"t": foreign_task}, stranger.token)
    assert foreign["comments"]["totalCount"] == 0
