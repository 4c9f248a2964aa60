"""What an agent does through `tama` beyond comments and status: summary, block, a recorded
decision to do nothing, questions and approval requests (inbox items), and people's answers."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain import access, comments, validate
from taskmachine.domain.errors import BadInput, Conflict, Forbidden, NotFound
from taskmachine.domain.events import emit, inbox_topic
from taskmachine.domain.machines import managers
from taskmachine.domain.tasks import editable_task, record, set_status
from taskmachine.models import (
    Comment,
    InboxItem,
    InboxKind,
    InboxStatus,
    Task,
    TaskStatus,
    TimelineKind,
    utcnow,
)


async def set_summary(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, summary: str
) -> Task:
    task = await editable_task(session, principal, task_id, "task.edit")
    task.summary = validate.text(summary, "summary", max_length=50_000)
    task.updated_at = utcnow()
    record(session, principal, task, TimelineKind.SUMMARY, {"summary": task.summary[:2000]})
    await session.flush()
    return task


async def record_no_action(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, reason: str
) -> Task:
    task = await editable_task(session, principal, task_id, "comment.post")
    record(
        session,
        principal,
        task,
        TimelineKind.NOOP,
        {
            "recorded_by": "agent" if principal.is_agent else "person",
            "reason": validate.text(reason, "reason", max_length=5000),
        },
    )
    await session.flush()
    return task


async def _recipients(session: AsyncSession, task: Task) -> list[uuid.UUID]:
    """Who answers an agent about a task: the person who created it, else who may assign work."""
    if task.created_by_user_id is not None:
        return [task.created_by_user_id]
    return await managers(session, task.workspace_id, "task.assign")


async def _raise(
    session: AsyncSession,
    principal: Principal,
    task: Task,
    kind: InboxKind,
    title: str,
    comment: Comment,
) -> list[InboxItem]:
    items = []
    for user_id in await _recipients(session, task):
        item = InboxItem(
            workspace_id=task.workspace_id,
            user_id=user_id,
            kind=kind,
            title=title[:300],
            body=comment.body,
            task_id=task.id,
            run_id=principal.run_id,
            agent_id=principal.agent_id,
            data={"commentId": str(comment.id), "taskId": str(task.id)},
        )
        session.add(item)
        emit(session, inbox_topic(user_id), {"kind": kind.value})
        items.append(item)
    await session.flush()
    return items


async def ask(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, question: str, kind: InboxKind
) -> list[InboxItem]:
    """A question or an approval request: a comment on the task and an item in people's inbox."""
    label = "Question" if kind is InboxKind.QUESTION else "Approval requested"
    text = validate.text(
        question, "question" if kind is InboxKind.QUESTION else "request", max_length=20_000
    )
    comment = await comments.post_comment(session, principal, task_id, f"**{label}:** {text}")
    task = await session.get(Task, task_id)
    assert task is not None
    return await _raise(session, principal, task, kind, f"{label}: {text[:200]}", comment)


async def block(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, reason: str
) -> Task:
    text = validate.text(reason, "reason", max_length=20_000)
    task = await set_status(session, principal, task_id, TaskStatus.BLOCKED)
    comment = await comments.post_comment(session, principal, task_id, f"**Blocked:** {text}")
    await _raise(
        session, principal, task, InboxKind.BLOCKED, f"Blocked: {task.title}"[:300], comment
    )
    return task


async def respond(
    session: AsyncSession,
    principal: Principal,
    item_id: uuid.UUID,
    answer: str,
    approve: bool | None = None,
) -> InboxItem:
    """A person answers a question (or decides an approval) from their inbox: the answer is a
    reply in the agent's thread, which runs the agent again."""
    item = await session.get(InboxItem, item_id)
    if item is None or item.user_id != principal.user_id:
        raise NotFound("no such inbox item")
    await access.require(session, principal, item.workspace_id, "inbox.act")
    if item.kind not in (InboxKind.QUESTION, InboxKind.APPROVAL, InboxKind.BLOCKED):
        raise BadInput("this item takes no answer", field="id")
    if item.status is InboxStatus.RESOLVED:
        raise Conflict("this item is already resolved")
    if item.kind is InboxKind.APPROVAL and approve is None:
        raise BadInput("decide the approval: approve true or false", field="approve")
    if item.kind is not InboxKind.APPROVAL and approve is not None:
        raise BadInput("only an approval request takes a decision", field="approve")
    comment_id = item.data.get("commentId")
    if item.task_id is None or comment_id is None:
        raise Forbidden("this item has no thread to answer in")
    text = validate.text(answer, "answer", max_length=20_000, required=approve is None)
    if approve is not None:
        text = f"{'Approved' if approve else 'Denied'}{': ' + text if text else '.'}"
    agent_ids = [item.agent_id] if item.agent_id else None
    await comments.post_comment(
        session, principal, item.task_id, text, uuid.UUID(comment_id), agent_ids
    )
    now = utcnow()
    item.status = InboxStatus.RESOLVED
    item.resolved_at = now
    item.read_at = item.read_at or now
    item.data = {
        **item.data,
        "answer": text,
        **({"approved": approve} if approve is not None else {}),
    }
    # Everyone else asked the same thing sees it answered.
    await session.execute(
        sa.update(InboxItem)
        .where(
            InboxItem.id != item.id,
            InboxItem.status == InboxStatus.OPEN,
            InboxItem.kind == item.kind,
            InboxItem.workspace_id == item.workspace_id,
        )
        .where(InboxItem.data["commentId"].as_string() == comment_id)
        .values(status=InboxStatus.RESOLVED, resolved_at=now)
    )
    await session.flush()
    return item
