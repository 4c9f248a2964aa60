"""Running an agent command and printing what it did: text for reading, `--json` for programs,
and on failure one line on stderr (plus `{"error": …}` on stdout with --json) and an exit code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from taskmachine.cli.agent.client import AgentClient, AgentCliError, run_env

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the result (or the error) as JSON on stdout.")
]
TaskOption = Annotated[
    str | None,
    typer.Option(
        "--task",
        metavar="TASK",
        help="Task id or number (12 or #12); default: this run's task.",
    ),
]
# Markdown text often starts with "- ": take it as the text, not as an unknown option. (No
# short options on these commands: click would find `-f` inside "- fix it" and eat the rest.)
TEXT_COMMAND: dict[str, Any] = {"ignore_unknown_options": True}
BodyArgument = Annotated[
    str | None, typer.Argument(metavar="TEXT", help="The text, or '-' to read stdin.")
]
FileOption = Annotated[
    str | None,
    typer.Option("--file", metavar="FILE", help="Read the text from FILE ('-' for stdin)."),
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command prints: `payload` with --json, else `text`."""

    payload: Any
    text: str


Action = Callable[[AgentClient], Awaitable[Outcome]]


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


@contextmanager
def reported(as_json: bool) -> Iterator[None]:
    """Turn an AgentCliError into its line on stderr and its exit code."""
    try:
        yield
    except AgentCliError as err:
        if as_json:
            print_json({"error": {"code": err.code, "message": err.message}})
        typer.echo(f"tama: {err.line}", err=True)
        raise typer.Exit(err.exit_code) from None


async def _perform(action: Action) -> Outcome:
    async with AgentClient(run_env()) as client:
        return await action(client)


def run(as_json: bool, action: Action) -> None:
    """Run `action` against the server with the run's token, then print its outcome."""
    with reported(as_json):
        outcome = asyncio.run(_perform(action))
    if as_json:
        print_json(outcome.payload)
    else:
        typer.echo(outcome.text)


def actor_name(actor: dict[str, Any] | None) -> str:
    if not actor:
        return "system"
    if actor.get("__typename") == "Agent":
        return f"{actor['name']} (@{actor['handle']})"
    return str(actor.get("name") or "someone")


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())
