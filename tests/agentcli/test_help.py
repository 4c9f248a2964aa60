"""Every agent command explains itself with --help; each group lists the exit codes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.agentcli.conftest import Result, base_env, tama

COMMANDS = {
    ("tasks", "show"): "Show a task",
    ("tasks", "comment"): "Post a comment on the task",
    ("tasks", "reply"): "Reply in a comment's thread",
    ("tasks", "status"): "Set the task's status",
    ("tasks", "summary"): "completion summary",
    ("tasks", "block"): "Block the task",
    ("tasks", "skip"): "decided to do nothing, and why",
    ("memory", "show"): "Print this agent's memory",
    ("memory", "write"): "Replace this agent's memory",
    ("questions", "ask"): "Ask a question",
    ("approvals", "request"): "Request approval",
    ("chat", "reply"): "Post a message in the chat",
}
GROUPS = ("tasks", "memory", "questions", "approvals", "chat")


def flat(result: Result) -> str:
    """Help text without the box drawing and line wrapping of the terminal layout."""
    assert result.code == 0, result.stderr
    return " ".join(result.stdout.replace("│", " ").split())


async def test_every_command_has_help_with_json_output(tmp_path: Path) -> None:
    env = base_env(tmp_path)  # no run needed to read help
    results = await asyncio.gather(*(tama(*args, "--help", env=env) for args in COMMANDS))
    for (args, expected), result in zip(COMMANDS.items(), results, strict=True):
        text = flat(result)
        assert f"Usage: tama {' '.join(args)}" in text, text
        assert expected in text, (args, text)
        assert "--json" in text, (args, text)


async def test_each_group_lists_its_commands_and_the_exit_codes(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    results = await asyncio.gather(
        *(tama(group, "--help", env=env) for group in GROUPS), tama("--help", env=env)
    )
    for group, result in zip(GROUPS, results, strict=False):
        text = flat(result)
        for command in (cmd for grp, cmd in COMMANDS if grp == group):
            assert command in text, (group, command)
        assert (
            "Exit codes: 0 ok; 1 other error; 2 bad input (fix the arguments); 3 not allowed"
            in text
        ), text
        assert "4 not found (check the id); 5 server unreachable (retry shortly)" in text
    top = flat(results[-1])
    assert all(group in top for group in GROUPS)
