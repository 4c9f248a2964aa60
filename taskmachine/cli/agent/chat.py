"""`tama chat reply`: the chat's agent answers in its chat."""

from __future__ import annotations

from typing import Annotated

import typer

from taskmachine.cli.agent.client import EXIT_CODES_HELP, AgentClient
from taskmachine.cli.agent.inputs import body_text
from taskmachine.cli.agent.output import (
    TEXT_COMMAND,
    BodyArgument,
    FileOption,
    JsonFlag,
    Outcome,
    reported,
    run,
)

app = typer.Typer(
    name="chat",
    help="Answer in a chat (only the chat's own agent may).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

SEND = """mutation Reply($c: ID!, $b: String!) {
  sendChatMessage(chatId: $c, body: $b) { id chatId body createdAt runId } }"""


@app.command("reply", context_settings=TEXT_COMMAND)
def reply_command(
    message: BodyArgument = None,
    file: FileOption = None,
    chat: Annotated[
        str | None,
        typer.Option("--chat", metavar="CHAT_ID", help="Default: this run's chat."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Post a message in the chat (markdown)."""
    with reported(as_json):
        text = body_text(message, file, "message")

    async def action(client: AgentClient) -> Outcome:
        chat_id = await client.chat_id(chat)
        sent = (await client.call(SEND, {"c": chat_id, "b": text}))["sendChatMessage"]
        return Outcome(sent, f"Sent to the chat (message {sent['id']}).")

    run(as_json, action)
