"""Comments (threads one level deep), tags of agents and teams, reactions."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain import access, validate
from taskmachine.domain.errors import BadInput
from taskmachine.domain.lookup import in_workspace, visible
from taskmachine.domain.tasks import record
from taskmachine.models import Agent, Comment, CommentMention, Reaction, Task, Team, TimelineKind

ALLOWED_REACTIONS = frozenset({"👍", "👎", "🎉", "❤️", "👀", "🚀", "😄", "😕"})
MAX_MENTIONS = 20


async def post_comment(
    session: AsyncSession,
    principal: Principal,
    task_id: uuid.UUID,
    body: str,
    parent_id: uuid.UUID | None = None,
    agent_ids: list[uuid.UUID] | None = None,
    team_ids: list[uuid.UUID] | None = None,
) -> Comment:
    task, _ = await visible(session, principal, Task, task_id, "task")
    await access.require(session, principal, task.workspace_id, "comment.post")
    text = validate.text(body, "body", max_length=50_000)
    root_id: uuid.UUID | None = None
    if parent_id is not None:
        parent = await in_workspace(session, Comment, parent_id, task.workspace_id, "parentId")
        if parent.task_id != task.id:
            raise BadInput("the parent comment is on another task", field="parentId")
        root_id = parent.parent_id or parent.id  # replies attach to the thread's root
    agents = list(dict.fromkeys(agent_ids or []))
    teams = list(dict.fromkeys(team_ids or []))
    if len(agents) + len(teams) > MAX_MENTIONS:
        raise BadInput(f"a comment tags at most {MAX_MENTIONS} agents and teams", field="agentIds")
    for agent_id in agents:
        await in_workspace(session, Agent, agent_id, task.workspace_id, "agentIds")
    for team_id in teams:
        await in_workspace(session, Team, team_id, task.workspace_id, "teamIds")
    comment = Comment(
        workspace_id=task.workspace_id,
        task_id=task.id,
        parent_id=root_id,
        author_user_id=principal.user_id if not principal.is_agent else None,
        author_agent_id=principal.agent_id,
        run_id=principal.run_id,
        body=text,
    )
    session.add(comment)
    await session.flush()
    session.add_all(CommentMention(comment_id=comment.id, agent_id=a) for a in agents)
    session.add_all(CommentMention(comment_id=comment.id, team_id=t) for t in teams)
    record(
        session,
        principal,
        task,
        TimelineKind.COMMENTED,
        {"thread_id": str(root_id or comment.id)},
        comment_id=comment.id,
    )
    await session.flush()
    from taskmachine.loop.triggers import on_comment  # the loop builds on the domain

    await on_comment(session, comment)
    await session.flush()
    return comment


async def react(
    session: AsyncSession, principal: Principal, comment_id: uuid.UUID, emoji: str, on: bool
) -> Comment:
    """Add (on=True) or take back (on=False) one reaction; repeating either is harmless."""
    comment, _ = await visible(session, principal, Comment, comment_id, "comment")
    await access.require(session, principal, comment.workspace_id, "comment.react")
    if emoji not in ALLOWED_REACTIONS:
        raise BadInput(f"emoji must be one of {' '.join(sorted(ALLOWED_REACTIONS))}", field="emoji")
    actor = (
        Reaction.agent_id == principal.agent_id
        if principal.is_agent
        else Reaction.user_id == principal.user_id
    )
    existing = await session.scalar(
        sa.select(Reaction).where(Reaction.comment_id == comment.id, Reaction.emoji == emoji, actor)
    )
    if on and existing is None:
        session.add(
            Reaction(
                comment_id=comment.id,
                emoji=emoji,
                user_id=None if principal.is_agent else principal.user_id,
                agent_id=principal.agent_id,
            )
        )
    elif not on and existing is not None:
        await session.delete(existing)
    else:
        return comment
    task = await session.get(Task, comment.task_id)
    assert task is not None
    record(
        session,
        principal,
        task,
        TimelineKind.REACTED,
        {"emoji": emoji, "on": on},
        comment_id=comment.id,
    )
    await session.flush()
    if on:
        from taskmachine.loop.triggers import on_reaction  # the loop builds on the domain

        await on_reaction(
            session,
            comment,
            emoji,
            user_id=None if principal.is_agent else principal.user_id,
            agent_id=principal.agent_id,
        )
        await session.flush()
    return comment
