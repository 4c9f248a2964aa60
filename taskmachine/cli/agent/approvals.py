"""`tama approvals request`: ask people to approve before acting; it lands in their inbox."""

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
from taskmachine.cli.agent.questions import raise_items

app = typer.Typer(
    name="approvals",
    help="Request people's approval before an action; it lands in their inbox.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

REQUEST = f"""mutation Approval($input: ApprovalRequestInput!) {{
  requestApproval(input: $input) {{ ...InboxItemFields }} }}
{INBOX_ITEM}"""


@app.command("request", context_settings=TEXT_COMMAND)
def request_command(
    request: BodyArgument = None,
    file: FileOption = None,
    task: TaskOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Request approval for what you mean to do: posted on the task and put in people's inbox.
    The decision comes back as a reply on the task, which runs you again: do not act before it."""
    with reported(as_json):
        text = body_text(request, file, "request")

    async def action(client: AgentClient) -> Outcome:
        items = await raise_items(client, task, REQUEST, "requestApproval", "request", text)
        return Outcome(
            {"inboxItems": items},
            f"Requested approval from {len(items)} "
            f"{'person' if len(items) == 1 else 'people'} in their inbox; "
            "the decision will arrive as a reply on the task.",
        )

    run(as_json, action)
