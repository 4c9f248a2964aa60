"""Runs, their status history and transcript chunks."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import sqlalchemy as sa
import strawberry
from strawberry.scalars import JSON

from taskmachine import models as m
from taskmachine.schema.helpers import db, loaders
from taskmachine.schema.types.agents import Agent
from taskmachine.schema.types.enums import RunStatus, TriggerKind
from taskmachine.schema.types.fleet import Machine, Runtime
from taskmachine.schema.types.work import Task


@strawberry.type
class RunTransition:
    attempt: int
    from_status: RunStatus | None
    to_status: RunStatus
    reason: str
    created_at: datetime


@strawberry.type
class TranscriptChunk:
    attempt: int
    seq: int
    events: JSON
    created_at: datetime

    @classmethod
    def of(cls, row: m.TranscriptChunk) -> TranscriptChunk:
        return cls(
            attempt=row.attempt,
            seq=row.seq,
            events=cast(JSON, row.events),
            created_at=row.created_at,
        )


@strawberry.type
class Run:
    id: strawberry.ID
    trigger_kind: TriggerKind
    input: str
    compiled_prompt: str
    status: RunStatus
    attempt: int
    session_id: str | None
    usage: JSON
    cost_usd: float | None
    failure_code: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    _row: strawberry.Private[m.Run]

    @classmethod
    def of(cls, row: m.Run) -> Run:
        return cls(
            id=strawberry.ID(str(row.id)),
            trigger_kind=row.trigger_kind,
            input=row.input,
            compiled_prompt=row.compiled_prompt,
            status=row.status,
            attempt=row.attempt,
            session_id=row.session_id,
            usage=cast(JSON, row.usage),
            cost_usd=row.cost_usd,
            failure_code=row.failure_code,
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            _row=row,
        )

    @strawberry.field(
        description="Why a queued run waits: agent at 2/2, runtime offline, task busy…"
    )
    def queue_reason(self) -> str | None:
        return self._row.queue_reason

    @strawberry.field(description="Its place among the waiting runs (1 = next).")
    def queue_position(self) -> int | None:
        return self._row.queue_position

    @strawberry.field
    def max_attempts(self) -> int:
        return self._row.max_attempts

    @strawberry.field
    def cancel_requested(self) -> bool:
        return self._row.cancel_requested_at is not None

    @strawberry.field(description="What the run changed in its worktree (git diff --stat).")
    def diff_stat(self) -> str | None:
        return self._row.diff_stat

    @strawberry.field
    def duration_ms(self) -> int | None:
        if self._row.started_at is None:
            return None
        end = self._row.finished_at or m.utcnow()
        return int((end - self._row.started_at).total_seconds() * 1000)

    @strawberry.field
    async def agent(self) -> Agent:
        row = await loaders().agent.load(self._row.agent_id)
        assert row is not None
        return Agent.of(row)

    @strawberry.field
    async def task(self) -> Task | None:
        if self._row.task_id is None:
            return None
        row = await loaders().task.load(self._row.task_id)
        return Task.of(row) if row else None

    @strawberry.field
    def chat_id(self) -> strawberry.ID | None:
        return strawberry.ID(str(self._row.chat_id)) if self._row.chat_id else None

    @strawberry.field
    async def runtime(self) -> Runtime | None:
        if self._row.runtime_id is None:
            return None
        row = await loaders().runtime.load(self._row.runtime_id)
        return Runtime.of(row) if row else None

    @strawberry.field
    async def machine(self) -> Machine | None:
        if self._row.machine_id is None:
            return None
        row = await loaders().machine.load(self._row.machine_id)
        return Machine.of(row) if row else None

    @strawberry.field(description="The run's status history, oldest first.")
    async def history(self) -> list[RunTransition]:
        async with db() as session:
            rows = (
                await session.scalars(
                    sa.select(m.RunTransition)
                    .where(m.RunTransition.run_id == self._row.id)
                    .order_by(m.RunTransition.id)
                )
            ).all()
        return [
            RunTransition(
                attempt=r.attempt,
                from_status=r.from_status,
                to_status=r.to_status,
                reason=r.reason,
                created_at=r.created_at,
            )
            for r in rows
        ]
