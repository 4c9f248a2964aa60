"""`tama memory …`: the agent's own bounded markdown memory, kept across runs."""

from __future__ import annotations

from typing import Annotated

import typer

from taskmachine.cli.agent.client import EXIT_CODES_HELP, AgentClient
from taskmachine.cli.agent.inputs import body_text
from taskmachine.cli.agent.output import TEXT_COMMAND, FileOption, JsonFlag, Outcome, reported, run

app = typer.Typer(
    name="memory",
    help="Read and rewrite this agent's memory (markdown, injected into every run).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

UPDATE_MEMORY = """mutation Memory($a: ID!, $m: String!) {
  updateAgent(id: $a, profile: {memory: $m}) { id name handle memory } }"""


@app.command("show")
def show_command(as_json: JsonFlag = False) -> None:
    """Print this agent's memory."""

    async def action(client: AgentClient) -> Outcome:
        agent = (await client.context()).agent
        memory = str(agent.get("memory") or "")
        who = {key: agent[key] for key in ("id", "name", "handle")}
        return Outcome({"agent": who, "memory": memory}, memory or "(memory is empty)")

    run(as_json, action)


@app.command("write", context_settings=TEXT_COMMAND)
def write_command(
    text: Annotated[
        str | None,
        typer.Argument(metavar="TEXT", help="The new memory, or '-' to read stdin."),
    ] = None,
    file: FileOption = None,
    append: Annotated[
        bool, typer.Option("--append", help="Add to the end of the memory instead of replacing it.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Replace this agent's memory (or --append to it). Keep what helps future runs."""
    with reported(as_json):
        new = body_text(text, file, "memory")

    async def action(client: AgentClient) -> Outcome:
        agent = (await client.context()).agent
        memory = new
        if append:
            old = str(agent.get("memory") or "")
            memory = f"{old.rstrip()}\n{new}" if old.strip() else new
        saved = (await client.call(UPDATE_MEMORY, {"a": agent["id"], "m": memory}))["updateAgent"]
        return Outcome(saved, f"Memory saved ({len(saved['memory'])} characters).")

    run(as_json, action)
