"""Triggers: product events that start an agent's turn. All go through `start_run`.

Agent-to-agent steering is explicit: an agent's comment never triggers another agent, an agent
reacting to its own comment does nothing, and another agent steers by reaction only when its
profile allows it.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.loop.start import start_run
from taskmachine.models import (
    Agent,
    Chat,
    ChatMessage,
    Comment,
    CommentMention,
    Run,
    Task,
    Team,
    TriggerKind,
)

ASSIGNMENT_INSTRUCTION = (
    "You have been assigned this task and now own it. Set it in progress with "
    "`tama tasks status in_progress`, do the work in this folder, report progress with "
    "`tama tasks comment`, and when you are done write the completion summary with "
    "`tama tasks summary` and set the status."
)
REACTION_MEANING = {
    "👍": "proceed with what you proposed",
    "👎": "stop, or adjust what you proposed",
}


def task_context(task: Task) -> dict[str, str]:
    return {
        "workspace_id": str(task.workspace_id),
        "task_id": str(task.id),
        "task_number": str(task.number),
        "task_title": task.title,
        "task_status": task.status.value,
        "task_priority": task.priority.value,
    }


async def on_assigned(session: AsyncSession, task: Task, agent: Agent) -> Run:
    """Assignment puts the task on the agent's queue; the dispatcher starts it when it may."""
    heading = f"Task #{task.number}: {task.title}"
    body = f"{ASSIGNMENT_INSTRUCTION}\n\n{heading}\n\n{task.description}".strip()
    return await start_run(
        session,
        agent=agent,
        trigger_kind=TriggerKind.ASSIGNMENT,
        trigger_input=body,
        context=task_context(task),
        task=task,
        resume=False,  # new work: a fresh session with the full prompt
    )


async def _thread_agent(session: AsyncSession, root: Comment) -> Agent | None:
    """Who a thread belongs to: the agent tagged at its root, or the agent who started it, or
    the agent that last ran in it."""
    tagged = await session.scalar(
        sa.select(CommentMention.agent_id)
        .where(CommentMention.comment_id == root.id, CommentMention.agent_id.is_not(None))
        .limit(1)
    )
    agent_id = tagged or root.author_agent_id
    if agent_id is None:
        agent_id = await session.scalar(
            sa.select(Run.agent_id)
            .where(Run.thread_comment_id == root.id)
            .order_by(Run.id.desc())
            .limit(1)
        )
    return await session.get(Agent, agent_id) if agent_id else None


async def on_comment(session: AsyncSession, comment: Comment) -> list[Run]:
    """A human comment that tags agents or teams, a human reply in an agent's thread, or a human
    root comment on an agent-assigned task runs an agent in that thread."""
    if comment.author_user_id is None:
        return []  # an agent's comment does not trigger another agent by itself
    task = await session.get(Task, comment.task_id)
    assert task is not None
    root_id = comment.parent_id or comment.id
    root = comment if comment.parent_id is None else await session.get(Comment, comment.parent_id)
    assert root is not None
    mentions = (
        await session.scalars(
            sa.select(CommentMention).where(CommentMention.comment_id == comment.id)
        )
    ).all()
    agents: list[Agent] = []
    for mention in mentions:
        if mention.agent_id is not None:
            agent = await session.get(Agent, mention.agent_id)
        else:
            team = await session.get(Team, mention.team_id)
            agent = (
                await session.get(Agent, team.lead_agent_id)
                if team and team.lead_agent_id
                else None
            )
        if agent is not None and agent.archived_at is None and agent not in agents:
            agents.append(agent)
    if not agents and comment.parent_id is not None:
        owner = await _thread_agent(session, root)
        agents = [owner] if owner and owner.archived_at is None else []
    if not agents and comment.parent_id is None and task.assignee_agent_id is not None:
        assignee = await session.get(Agent, task.assignee_agent_id)
        agents = [assignee] if assignee and assignee.archived_at is None else []
    context = {**task_context(task), "comment_id": str(comment.id), "thread_id": str(root_id)}
    runs = []
    for agent in agents:
        body = (
            f"A person commented on task #{task.number} ({task.title}). Answer in the thread with "
            f'`tama tasks reply {root_id} "…"`, or act on it.\n\n> {comment.body}'
        )
        runs.append(
            await start_run(
                session,
                agent=agent,
                trigger_kind=TriggerKind.COMMENT,
                trigger_input=body,
                context=context,
                task=task,
                thread_comment_id=root_id,
            )
        )
    return runs


async def on_reaction(
    session: AsyncSession,
    comment: Comment,
    emoji: str,
    *,
    user_id: uuid.UUID | None,
    agent_id: uuid.UUID | None,
) -> Run | None:
    """A reaction on an agent's comment runs its author: 👍 proceed, 👎 stop or adjust."""
    if comment.author_agent_id is None or emoji not in REACTION_MEANING:
        return None
    if agent_id is not None:
        if agent_id == comment.author_agent_id:
            return None  # reacting to one's own comment does nothing
        reactor = await session.get(Agent, agent_id)
        if reactor is None or not reactor.may_steer_by_reaction:
            return None
    author = await session.get(Agent, comment.author_agent_id)
    task = await session.get(Task, comment.task_id)
    if author is None or author.archived_at is not None or task is None:
        return None
    root_id = comment.parent_id or comment.id
    body = (
        f"Someone reacted {emoji} to your comment on task #{task.number}: "
        f"{REACTION_MEANING[emoji]}.\n\n> {comment.body}"
    )
    return await start_run(
        session,
        agent=author,
        trigger_kind=TriggerKind.REACTION,
        trigger_input=body,
        context={**task_context(task), "comment_id": str(comment.id), "thread_id": str(root_id)},
        task=task,
        thread_comment_id=root_id,
    )


async def on_chat_message(session: AsyncSession, message: ChatMessage) -> Run | None:
    """A person's message runs the chat's agent for one turn; a new message while a turn is
    queued joins it, and one arriving while a turn runs waits for it."""
    if message.author_user_id is None:
        return None
    chat = await session.get(Chat, message.chat_id)
    assert chat is not None
    agent = await session.get(Agent, chat.agent_id)
    if agent is None or agent.archived_at is not None:
        return None
    body = f'{message.body}\n\n(Answer with `tama chat reply "…"`.)'
    return await start_run(
        session,
        agent=agent,
        trigger_kind=TriggerKind.CHAT,
        trigger_input=body,
        context={
            "workspace_id": str(chat.workspace_id),
            "chat_id": str(chat.id),
            "chat_title": chat.title,
        },
        chat_id=chat.id,
    )
