"""Runs and their transcripts (read side; dispatch and control live in later parts)."""

from __future__ import annotations

import sqlalchemy as sa
import strawberry

from taskmachine import models as m
from taskmachine.domain import access
from taskmachine.domain import runs as run_domain
from taskmachine.domain.errors import Conflict, Forbidden
from taskmachine.domain.lookup import visible
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, ident, need_id, principal
from taskmachine.schema.ops.listing import page
from taskmachine.schema.pagination import Connection
from taskmachine.schema.types.enums import RunStatus
from taskmachine.schema.types.runs import Run, TranscriptChunk
from taskmachine.wire.control import CancelRun


@strawberry.input
class RunFilter:
    task_id: strawberry.ID | None = None
    chat_id: strawberry.ID | None = None
    agent_id: strawberry.ID | None = None
    status: list[RunStatus] | None = None


@strawberry.type
class ClaimResult:
    accepted: bool
    reason: str | None = None


@strawberry.type
class Query:
    @strawberry.field(description="Runs of a workspace, newest first.")
    async def runs(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        filter: RunFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Run]:
        wid = need_id(workspace_id, "workspaceId")
        query = sa.select(m.Run).where(m.Run.workspace_id == wid)
        if filter is not None:
            if (task_id := ident(filter.task_id, "taskId")) is not None:
                query = query.where(m.Run.task_id == task_id)
            if (chat_id := ident(filter.chat_id, "chatId")) is not None:
                query = query.where(m.Run.chat_id == chat_id)
            if (agent_id := ident(filter.agent_id, "agentId")) is not None:
                query = query.where(m.Run.agent_id == agent_id)
            if filter.status:
                query = query.where(m.Run.status.in_(filter.status))
        return await page(
            info,
            query,
            m.Run.id,
            Run.of,
            first=first,
            after=after,
            workspace_id=wid,
            descending=True,
        )

    @strawberry.field
    async def run(self, info: Info, id: strawberry.ID) -> Run:
        caller = await principal(info)
        async with db() as session:
            row, _ = await visible(session, caller, m.Run, need_id(id, "id"), "run")
        return Run.of(row)

    @strawberry.field(description="A run's persisted transcript, in order.")
    async def transcript(
        self, info: Info, run_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[TranscriptChunk]:
        caller = await principal(info)
        async with db() as session:
            run, _ = await visible(session, caller, m.Run, need_id(run_id, "runId"), "run")
        query = sa.select(m.TranscriptChunk).where(m.TranscriptChunk.run_id == run.id)
        return await page(
            info, query, m.TranscriptChunk.id, TranscriptChunk.of, first=first, after=after
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="A machine takes a dispatched run; one claim per attempt wins."
    )
    async def claim_run(self, info: Info, run_id: strawberry.ID, attempt: int) -> ClaimResult:
        caller = await principal(info, machine=True)
        if caller.machine_id is None:
            raise Forbidden("only a machine claims runs")
        rid = need_id(run_id, "runId")
        async with db() as session:
            accepted = await run_domain.claim(
                session, caller.machine_id, rid, attempt, info.context.state.settings.lease_seconds
            )
        return ClaimResult(
            accepted=accepted,
            reason=None if accepted else "not dispatched to you, or already claimed",
        )

    @strawberry.mutation(
        description="Stop a run: at once if it has not started, else its machine stops it."
    )
    async def cancel_run(self, info: Info, id: strawberry.ID) -> Run:
        caller = await principal(info)
        async with db() as session:
            run, _ = await visible(session, caller, m.Run, need_id(id, "id"), "run")
            await access.require(session, caller, run.workspace_id, "run.control")
            if await run_domain.cancel(session, run):
                broker = info.context.state.services.get("broker")
                if broker is None:
                    raise Conflict("the server runs without a broker; the machine cannot be told")
                await broker.publish_control(
                    str(run.machine_id), CancelRun(run_id=run.id, attempt=run.attempt)
                )
            await session.flush()
        return Run.of(run)

    @strawberry.mutation(description="Run a finished, failed or cancelled run again, as a new run.")
    async def retry_run(self, info: Info, id: strawberry.ID) -> Run:
        caller = await principal(info)
        async with db() as session:
            old, _ = await visible(session, caller, m.Run, need_id(id, "id"), "run")
            await access.require(session, caller, old.workspace_id, "run.control")
            if old.status in run_domain.ACTIVE:
                raise Conflict("the run is still active")
            agent = await session.get(m.Agent, old.agent_id)
            assert agent is not None
            task = await session.get(m.Task, old.task_id) if old.task_id else None
            run = run_domain.new_run(
                session,
                agent=agent,
                trigger_kind=m.TriggerKind.MANUAL,
                input=old.input,
                compiled_prompt=old.compiled_prompt,
                runtime_id=old.runtime_id,
                priority=old.priority,
                task=task,
                chat_id=old.chat_id,
                thread_comment_id=old.thread_comment_id,
                follows_run_id=old.id,
                permission=old.permission,
            )
            await session.flush()
        return Run.of(run)
