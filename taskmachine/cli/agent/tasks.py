"""`tama tasks …`: what an agent inside a run reads and records on a task."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from taskmachine.cli.agent.client import EXIT_CODES_HELP, AgentClient, bad_input
from taskmachine.cli.agent.fields import (
    ACTOR,
    COMMENT,
    TASK,
    comment_text,
    event_text,
    task_label,
    task_text,
)
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
    name="tasks",
    help=(
        "Read and update tasks from inside a run. TASK defaults to this run's task; "
        "give an id or a number (12 or #12) to name another in the same workspace. "
        "Text arguments also come from --file FILE, or '-' to read stdin."
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

PAGE = 100

SHOW = f"""query Show($t: ID!, $thread: ID, $withTimeline: Boolean!) {{
  task(id: $t) {{ ...TaskFields }}
  comments(taskId: $t, threadId: $thread, first: {PAGE}) {{
    totalCount edges {{ node {{ ...CommentFields }} }} }}
  timeline(taskId: $t, first: {PAGE}) @include(if: $withTimeline) {{
    totalCount edges {{ node {{ id kind data createdAt
      actor {ACTOR} }} }} }}
}}
{TASK}
{COMMENT}"""

POST_COMMENT = f"""mutation Comment($input: PostCommentInput!) {{
  postComment(input: $input) {{ ...CommentFields }} }}
{COMMENT}"""

SET_STATUS = f"""mutation Status($t: ID!, $s: TaskStatus!) {{
  setTaskStatus(taskId: $t, status: $s) {{ ...TaskFields }} }}
{TASK}"""

SET_SUMMARY = f"""mutation Summary($t: ID!, $s: String!) {{
  setTaskSummary(taskId: $t, summary: $s) {{ ...TaskFields }} }}
{TASK}"""

BLOCK = f"""mutation Block($t: ID!, $r: String!) {{
  blockTask(taskId: $t, reason: $r) {{ ...TaskFields }} }}
{TASK}"""

NO_ACTION = f"""mutation Skip($t: ID!, $r: String!) {{
  recordNoAction(taskId: $t, reason: $r) {{ ...TaskFields }} }}
{TASK}"""

STATUSES = ("BACKLOG", "TODO", "IN_PROGRESS", "BLOCKED", "IN_REVIEW", "DONE", "CANCELLED")
_STATUS_ALIASES = {
    "TO_DO": "TODO",
    "INPROGRESS": "IN_PROGRESS",
    "REVIEW": "IN_REVIEW",
    "INREVIEW": "IN_REVIEW",
    "CANCELED": "CANCELLED",
}


def parse_status(value: str) -> str:
    """`in-progress`, `in_progress`, `In Progress` → IN_PROGRESS."""
    key = re.sub(r"[\s\-]+", "_", value.strip()).upper()
    key = _STATUS_ALIASES.get(key, key)
    if key not in STATUSES:
        choices = ", ".join(s.lower().replace("_", "-") for s in STATUSES)
        raise bad_input(f"unknown status {value!r}: use one of {choices}")
    return key


@app.command("show")
def show_command(
    task: Annotated[
        str | None,
        typer.Argument(metavar="TASK", help="Task id or number; default: this run's task."),
    ] = None,
    thread: Annotated[
        str | None,
        typer.Option(
            "--thread", metavar="COMMENT_ID", help="Show the replies in this comment's thread."
        ),
    ] = None,
    timeline: Annotated[
        bool, typer.Option("--timeline", help="Also show the task's timeline, oldest first.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show a task: its fields, summary and comments (with ids to reply to)."""

    async def action(client: AgentClient) -> Outcome:
        variables = {"t": await client.task_id(task), "thread": thread, "withTimeline": timeline}
        data = await client.call(SHOW, variables)
        comments = [edge["node"] for edge in data["comments"]["edges"]]
        total = data["comments"]["totalCount"]
        what = "replies" if thread else "comments"
        lines = [task_text(data["task"]), "", f"{what} ({len(comments)} of {total}):"]
        lines += [comment_text(c) for c in comments] or ["  none"]
        payload: dict[str, Any] = {"task": data["task"], what: comments}
        if timeline:
            events = [edge["node"] for edge in data["timeline"]["edges"]]
            payload["timeline"] = events
            lines += ["", f"timeline ({len(events)} of {data['timeline']['totalCount']}):"]
            lines += [f"  {event_text(e)}" for e in events]
        return Outcome(payload, "\n".join(lines))

    run(as_json, action)


async def _comment(client: AgentClient, task: str | None, body: str, parent: str | None) -> Outcome:
    task_id = await client.task_id(task)
    comment_input = {"taskId": task_id, "body": body, "parentId": parent}
    comment = (await client.call(POST_COMMENT, {"input": comment_input}))["postComment"]
    thread = comment["parentId"] or comment["id"]
    if parent:
        text = f"Replied in thread {thread} (comment {comment['id']})."
    else:
        text = (
            f"Commented (comment {comment['id']}); "
            f'reply in its thread with: tama tasks reply {thread} "…"'
        )
    return Outcome(comment, text)


@app.command("comment", context_settings=TEXT_COMMAND)
def comment_command(
    body: BodyArgument = None,
    file: FileOption = None,
    task: TaskOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Post a comment on the task's timeline (markdown)."""
    with reported(as_json):
        text = body_text(body, file, "comment")
    run(as_json, lambda client: _comment(client, task, text, None))


@app.command("reply", context_settings=TEXT_COMMAND)
def reply_command(
    comment_id: Annotated[
        str, typer.Argument(metavar="COMMENT_ID", help="The comment whose thread to reply in.")
    ],
    body: BodyArgument = None,
    file: FileOption = None,
    task: TaskOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Reply in a comment's thread (`tama tasks show` lists comment ids)."""
    with reported(as_json):
        text = body_text(body, file, "reply")
    run(as_json, lambda client: _comment(client, task, text, comment_id))


async def _task_mutation(
    client: AgentClient, task: str | None, query: str, field: str, extra: dict[str, Any]
) -> dict[str, Any]:
    data = await client.call(query, {"t": await client.task_id(task), **extra})
    result: dict[str, Any] = data[field]
    return result


@app.command("status")
def status_command(
    status: Annotated[
        str,
        typer.Argument(
            metavar="STATUS",
            help="backlog, todo, in-progress, blocked, in-review, done or cancelled.",
        ),
    ],
    task: TaskOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Set the task's status (to block with a reason, use `tama tasks block`)."""
    with reported(as_json):
        value = parse_status(status)

    async def action(client: AgentClient) -> Outcome:
        row = await _task_mutation(client, task, SET_STATUS, "setTaskStatus", {"s": value})
        return Outcome(row, f"{task_label(row).capitalize()} is now {row['status']}.")

    run(as_json, action)


@app.command("summary", context_settings=TEXT_COMMAND)
def summary_command(
    summary: BodyArgument = None,
    file: FileOption = None,
    task: TaskOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Store the task's completion summary: what was done, and how to verify it."""
    with reported(as_json):
        text = body_text(summary, file, "summary")

    async def action(client: AgentClient) -> Outcome:
        row = await _task_mutation(client, task, SET_SUMMARY, "setTaskSummary", {"s": text})
        return Outcome(row, f"Saved the summary of {task_label(row)} ({len(text)} characters).")

    run(as_json, action)


@app.command("block", context_settings=TEXT_COMMAND)
def block_command(
    reason: BodyArgument = None,
    file: FileOption = None,
    task: TaskOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Block the task: status BLOCKED, the reason posted, people told in their inbox."""
    with reported(as_json):
        text = body_text(reason, file, "reason")

    async def action(client: AgentClient) -> Outcome:
        row = await _task_mutation(client, task, BLOCK, "blockTask", {"r": text})
        return Outcome(
            row,
            f"{task_label(row).capitalize()} is BLOCKED; the reason is posted "
            "and people are told in their inbox.",
        )

    run(as_json, action)


@app.command("skip", context_settings=TEXT_COMMAND)
def skip_command(
    reason: BodyArgument = None,
    file: FileOption = None,
    task: TaskOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Record on the timeline that you decided to do nothing, and why."""
    with reported(as_json):
        text = body_text(reason, file, "reason")

    async def action(client: AgentClient) -> Outcome:
        row = await _task_mutation(client, task, NO_ACTION, "recordNoAction", {"r": text})
        return Outcome(row, f"Recorded on {task_label(row)}'s timeline: no action taken.")

    run(as_json, action)
