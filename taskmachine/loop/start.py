"""The one path from a trigger to a recorded run."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.domain import runs as run_domain
from taskmachine.loop.guards import join_follow_up, session_to_resume, waiting_follow_up
from taskmachine.loop.prompt import PromptParts, compile_full, compile_resumed
from taskmachine.models import Agent, Goal, Project, Run, Task, TriggerKind


async def select_runtime(agent: Agent, named: uuid.UUID | None) -> uuid.UUID | None:
    """The runtime the trigger named, else the agent's default."""
    return named or agent.default_runtime_id


async def knowledge_for(session: AsyncSession, task: Task | None) -> list[tuple[str, str]]:
    """Documents relevant to the request, limited to what this agent may see (its workspace)."""
    found: list[tuple[str, str]] = []
    if task is None:
        return found
    if task.project_id:
        project = await session.get(Project, task.project_id)
        if project and project.description and project.workspace_id == task.workspace_id:
            found.append((f"Project: {project.name}", project.description))
    if task.goal_id:
        goal = await session.get(Goal, task.goal_id)
        if goal and goal.workspace_id == task.workspace_id:
            found.append((f"Goal: {goal.title}", goal.description))
    return found


async def start_run(
    session: AsyncSession,
    *,
    agent: Agent,
    trigger_kind: TriggerKind,
    trigger_input: str,
    context: dict[str, str],
    task: Task | None = None,
    chat_id: uuid.UUID | None = None,
    thread_comment_id: uuid.UUID | None = None,
    runtime_id: uuid.UUID | None = None,
    priority: int | None = None,
    follows_run_id: uuid.UUID | None = None,
    resume: bool = True,
    resume_session_id: str | None = None,
) -> Run:
    """Acting agent → runtime → compiled prompt → recorded run (or the waiting follow-up)."""
    runtime = await select_runtime(agent, runtime_id)
    parts = PromptParts(
        agent_name=agent.name,
        summary=agent.summary,
        instructions=agent.instructions,
        memory=agent.memory,
        knowledge=await knowledge_for(session, task),
        context=context,
        trigger_input=trigger_input,
    )
    waiting = await waiting_follow_up(
        session, agent_id=agent.id, task_id=task.id if task else None, chat_id=chat_id
    )
    if waiting is not None:
        return join_follow_up(session, waiting, trigger_input, parts)
    resume_id = resume_session_id if runtime else None
    resume_id = resume_id or (
        await session_to_resume(
            session, agent, runtime, thread_comment_id=thread_comment_id, chat_id=chat_id
        )
        if resume
        else None
    )
    prompt = compile_resumed(parts) if resume_id else compile_full(parts)
    if priority is None:
        priority = run_domain.AMQP_PRIORITY[task.priority] if task else run_domain.CHAT_PRIORITY
    return run_domain.new_run(
        session,
        agent=agent,
        trigger_kind=trigger_kind,
        input=trigger_input,
        compiled_prompt=prompt,
        runtime_id=runtime,
        priority=priority,
        task=task,
        chat_id=chat_id,
        thread_comment_id=thread_comment_id,
        follows_run_id=follows_run_id,
        session_id=resume_id,
    )
