"""Agent runs, their status history, and their transcripts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, enum_column, fk
from taskmachine.models.enums import RunStatus, TriggerKind


class Run(IdMixin, CreatedMixin, Base):
    __tablename__ = "runs"
    __table_args__ = (sa.Index("ix_runs_status_queue", "status", "priority", "id"),)

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    agent_id: Mapped[uuid.UUID] = fk("agents.id")
    task_id: Mapped[uuid.UUID | None] = fk("tasks.id", nullable=True)
    chat_id: Mapped[uuid.UUID | None] = fk("chats.id", nullable=True)
    # The thread a comment-triggered run answers in.
    # use_alter: comments point at runs too, so this key is added after both tables exist.
    thread_comment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("comments.id", ondelete="SET NULL", use_alter=True)
    )
    trigger_kind: Mapped[TriggerKind] = enum_column(TriggerKind)
    input: Mapped[str] = mapped_column(sa.Text, default="")
    compiled_prompt: Mapped[str] = mapped_column(sa.Text, default="")
    runtime_id: Mapped[uuid.UUID | None] = fk("runtimes.id", nullable=True, ondelete="SET NULL")
    machine_id: Mapped[uuid.UUID | None] = fk("machines.id", nullable=True, ondelete="SET NULL")
    status: Mapped[RunStatus] = enum_column(RunStatus, default=RunStatus.QUEUED)
    priority: Mapped[int] = mapped_column(default=0)
    attempt: Mapped[int] = mapped_column(default=1)
    max_attempts: Mapped[int] = mapped_column(default=2)
    session_id: Mapped[str | None] = mapped_column(sa.String(128))
    # The CLI session this run continues (a follow-up turn in the same thread or chat).
    resume_session_id: Mapped[str | None] = mapped_column(sa.String(128))
    usage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cost_usd: Mapped[float | None]
    failure_code: Mapped[str | None] = mapped_column(sa.String(32))
    error: Mapped[str | None] = mapped_column(sa.Text)
    # Why a queued run waits (agent at 2/2, runtime offline, task busy…) and its place in line.
    queue_reason: Mapped[str | None] = mapped_column(sa.String(200))
    queue_position: Mapped[int | None]
    # Run tokens are derived (HMAC) from the run, the attempt and this nonce: nothing to store.
    token_nonce: Mapped[str] = mapped_column(sa.String(32), default="")
    permission: Mapped[str] = mapped_column(sa.String(16), default="safe")
    cancel_requested_at: Mapped[datetime | None]
    # A retry after a lost lease starts from a clean worktree.
    clean_worktree: Mapped[bool] = mapped_column(default=False)
    # The run this one follows up (a retry by hand, a forgotten summary, a queued follow-up).
    follows_run_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    diff_stat: Mapped[str | None] = mapped_column(sa.Text)
    dispatched_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]


class RunTransition(IdMixin, CreatedMixin, Base):
    """One row per status change: the run's history."""

    __tablename__ = "run_transitions"

    run_id: Mapped[uuid.UUID] = fk("runs.id")
    attempt: Mapped[int]
    from_status: Mapped[RunStatus | None] = enum_column(RunStatus, nullable=True)
    to_status: Mapped[RunStatus] = enum_column(RunStatus)
    reason: Mapped[str] = mapped_column(sa.Text, default="")


class TranscriptChunk(IdMixin, CreatedMixin, Base):
    __tablename__ = "transcript_chunks"
    __table_args__ = (sa.UniqueConstraint("run_id", "attempt", "seq"),)

    run_id: Mapped[uuid.UUID] = fk("runs.id", index=False)
    attempt: Mapped[int]
    seq: Mapped[int]
    # Normalized transcript events (see taskmachine.wire.transcript).
    events: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
