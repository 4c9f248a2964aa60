"""Runs and their transcripts (read side; dispatch and control live in later parts)."""

from __future__ import annotations

import sqlalchemy as sa
import strawberry

from taskmachine import models as m
from taskmachine.domain.lookup import visible
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, ident, need_id, principal
from taskmachine.schema.ops.listing import page
from taskmachine.schema.pagination import Connection
from taskmachine.schema.types.enums import RunStatus
from taskmachine.schema.types.runs import Run, TranscriptChunk


@strawberry.input
class RunFilter:
    task_id: strawberry.ID | None = None
    chat_id: strawberry.ID | None = None
    agent_id: strawberry.ID | None = None
    status: list[RunStatus] | None = None


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
