"""After a run ends: a trace for every turn, and the completion summary as a safety net.

- A turn that changed nothing and explained nothing is recorded as a no-op on the timeline, so a
  stuck agent is never mistaken for a quiet one. (An agent that chose to do nothing records why
  itself, with `tama tasks skip`, and that counts as a trace.)
- An agent that leaves its task done or in review without a summary gets exactly one follow-up
  run that only writes it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain.tasks import record
from taskmachine.loop.start import start_run
from taskmachine.loop.triggers import task_context
from taskmachine.models import (
    Agent,
    ChatMessage,
    InboxItem,
    Run,
    RunStatus,
    Task,
    TaskStatus,
    TimelineEvent,
    TimelineKind,
    TriggerKind,
)

SUMMARY_INSTRUCTION = (
    "You finished this task without writing its completion summary. Write it now with "
    '`tama tasks summary "…"`: what was done, what changed, what is left. Do nothing else.'
)


async def left_a_trace(session: AsyncSession, run: Run) -> bool:
    """Did the run change product state or explain itself?"""
    # One statement, three EXISTS: each stops at the first row it finds.
    traces = sa.select(
        sa.select(TimelineEvent.id)
        .where(TimelineEvent.run_id == run.id, TimelineEvent.kind != TimelineKind.RUN)
        .exists(),
        sa.select(ChatMessage.id).where(ChatMessage.run_id == run.id).exists(),
        sa.select(InboxItem.id).where(InboxItem.run_id == run.id).exists(),
    )
    return any((await session.execute(traces)).one())


async def after_run(session: AsyncSession, run: Run) -> None:
    if run.status is not RunStatus.SUCCEEDED:
        return
    await session.flush()
    task = await session.get(Task, run.task_id) if run.task_id else None
    if not await left_a_trace(session, run) and task is not None:
        record(
            session,
            Principal(agent_id=run.agent_id),
            task,
            TimelineKind.NOOP,
            {"recorded_by": "loop", "reason": "the turn changed nothing and explained nothing"},
            run_id=run.id,
        )
    if (
        task is not None
        and run.trigger_kind is not TriggerKind.SUMMARY
        and task.assignee_agent_id == run.agent_id
        and task.status in (TaskStatus.DONE, TaskStatus.IN_REVIEW)
        and not (task.summary or "").strip()
    ):
        already = await session.scalar(
            sa.select(Run.id)
            .where(Run.task_id == task.id, Run.trigger_kind == TriggerKind.SUMMARY)
            .limit(1)
        )
        agent = await session.get(Agent, run.agent_id)
        if already is None and agent is not None:
            await start_run(
                session,
                agent=agent,
                trigger_kind=TriggerKind.SUMMARY,
                trigger_input=SUMMARY_INSTRUCTION,
                context=task_context(task),
                task=task,
                thread_comment_id=run.thread_comment_id,
                follows_run_id=run.id,
                runtime_id=run.runtime_id,
                resume_session_id=run.session_id,
            )
