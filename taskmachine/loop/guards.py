"""Guardrails before a run is recorded, and what a follow-up turn resumes.

- One active job per task (or chat): a trigger on a busy subject queues one follow-up; a further
  trigger while that follow-up still waits joins it instead of adding another.
- A follow-up in the same thread or chat resumes the CLI session of the agent's last turn there,
  when that session exists, is recent, and ran on the same runtime.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.domain.events import emit, run_topic
from taskmachine.loop.prompt import PromptParts, compile_full, compile_resumed
from taskmachine.models import Agent, Comment, Run, RunStatus, utcnow

SESSION_TTL = timedelta(hours=24)


async def waiting_follow_up(
    session: AsyncSession,
    *,
    agent_id: uuid.UUID,
    task_id: uuid.UUID | None,
    chat_id: uuid.UUID | None,
) -> Run | None:
    """This agent's turn that still waits on the same task or chat, if any: a new trigger joins
    it, so a busy subject holds at most one follow-up per agent (the scheduler lets one run at
    a time)."""
    subject = Run.task_id == task_id if task_id else Run.chat_id == chat_id
    return await session.scalar(
        sa.select(Run)
        .where(subject, Run.agent_id == agent_id, Run.status == RunStatus.QUEUED)
        .order_by(Run.id)
        .limit(1)
    )


def join_follow_up(session: AsyncSession, run: Run, extra_input: str, parts: PromptParts) -> Run:
    """Fold another trigger into the follow-up that already waits (exactly one follow-up)."""
    run.input = f"{run.input}\n\n---\n\n{extra_input}"
    parts.trigger_input = run.input
    run.compiled_prompt = compile_resumed(parts) if run.resume_session_id else compile_full(parts)
    emit(session, run_topic(run.id), {"kind": "input", "status": run.status.value})
    return run


async def session_to_resume(
    session: AsyncSession,
    agent: Agent,
    runtime_id: uuid.UUID | None,
    *,
    thread_comment_id: uuid.UUID | None = None,
    chat_id: uuid.UUID | None = None,
) -> str | None:
    """The CLI session of this agent's last turn in the thread or chat, if it can be resumed."""
    if runtime_id is None or (thread_comment_id is None and chat_id is None):
        return None
    if thread_comment_id is not None:
        # The thread's turns, and the run that wrote its root comment (e.g. an assignment run
        # whose comment a person answered).
        root_run = await session.scalar(
            sa.select(Comment.run_id).where(Comment.id == thread_comment_id)
        )
        where = Run.thread_comment_id == thread_comment_id
        if root_run is not None:
            where = sa.or_(where, Run.id == root_run)
    else:
        where = Run.chat_id == chat_id
    last = await session.scalar(
        sa.select(Run)
        .where(where, Run.agent_id == agent.id, Run.session_id.is_not(None))
        .order_by(Run.id.desc())
        .limit(1)
    )
    if last is None or last.runtime_id != runtime_id:
        return None  # no session yet, or the runtime changed: the full prompt again
    if last.finished_at is not None and utcnow() - last.finished_at > SESSION_TTL:
        return None  # expired
    return last.session_id
