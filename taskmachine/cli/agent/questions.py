"""`tama questions ask`: a question for people; it lands in their inbox."""

from __future__ import annotations

import typer

from taskmachine.cli.agent.client import EXIT_CODES_HELP, AgentClient
from taskmachine.cli.agent.fields import INBOX_ITEM
from taskmachine.cli.agent.inputs import body_text
from taskmachine.cli.agent.output import (
    TEXT_COMMAND,
    BodyArgument,
    FileOption,
    JsonFlag,
    Outcome,
    TaskOption,
    reported,
    run,
)

app = typer.Typer(
    name="questions",
    help="Ask people a question about a task; it lands in their inbox.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

ASK = f"""mutation Ask($input: AskInput!) {{
  askQuestion(input: $input) {{ ...InboxItemFields }} }}
{INBOX_ITEM}"""


async def raise_items(
    client: AgentClient, task: str | None, query: str, field: str, input_field: str, text: str
) -> list[dict[str, object]]:
    task_id = await client.task_id(task)
    data = await client.call(query, {"input": {"taskId": task_id, input_field: text}})
    items: list[dict[str, object]] = data[field]
    return items


@app.command("ask", context_settings=TEXT_COMMAND)
def ask_command(
    question: BodyArgument = None,
    file: FileOption = None,
    task: TaskOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask a question: posted on the task and put in people's inbox. Their answer comes back
    as a reply on the task, which runs you again: end your turn after asking."""
    with reported(as_json):
        text = body_text(question, file, "question")

    async def action(client: AgentClient) -> Outcome:
        items = await raise_items(client, task, ASK, "askQuestion", "question", text)
        return Outcome(
            {"inboxItems": items},
            f"Asked {len(items)} {'person' if len(items) == 1 else 'people'} in their inbox; "
            "the answer will arrive as a reply on the task.",
        )

    run(as_json, action)
