"""GraphQL fragments the agent commands share, and how each record reads as text."""

from __future__ import annotations

import json
from typing import Any

from taskmachine.cli.agent.output import actor_name, indent

ACTOR = "{ __typename ... on User { id name } ... on Agent { id name handle } }"

TASK = f"""fragment TaskFields on Task {{
  id number title description status priority summary updatedAt workspaceId
  assignee {ACTOR} }}"""

COMMENT = f"""fragment CommentFields on Comment {{
  id taskId parentId body createdAt replyCount author {ACTOR} }}"""

INBOX_ITEM = """fragment InboxItemFields on InboxItem {
  id kind status title body createdAt task { id number } }"""


def task_label(task: dict[str, Any]) -> str:
    return f"task #{task['number']}"


def task_text(task: dict[str, Any]) -> str:
    lines = [
        f"Task #{task['number']}: {task['title']}",
        f"id: {task['id']}",
        f"status: {task['status']}  priority: {task['priority']}",
    ]
    if task.get("assignee") is not None:
        lines.append(f"assignee: {actor_name(task['assignee'])}")
    if task.get("description"):
        lines += ["description:", indent(task["description"])]
    if task.get("summary"):
        lines += ["summary:", indent(task["summary"])]
    return "\n".join(lines)


def comment_text(comment: dict[str, Any]) -> str:
    head = f"  [{comment['id']}] {actor_name(comment.get('author'))} at {comment['createdAt']}"
    if comment.get("replyCount"):
        head += f" ({comment['replyCount']} replies)"
    return f"{head}\n{indent(comment['body'], '      ')}"


def event_text(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    detail = f" {json.dumps(data, ensure_ascii=False)}" if data else ""
    return f"{event['createdAt']} {event['kind']} by {actor_name(event.get('actor'))}{detail}"
