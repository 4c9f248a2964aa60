"""Inbox items: what needs a person's attention, each with its action."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, enum_column, fk
from taskmachine.models.enums import InboxKind, InboxStatus


class InboxItem(IdMixin, CreatedMixin, Base):
    __tablename__ = "inbox_items"
    __table_args__ = (
        # One open item per subject: a stale runtime raises one item, not one per heartbeat.
        sa.UniqueConstraint("user_id", "dedupe_key"),
        sa.Index("ix_inbox_items_user_status", "user_id", "status", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    user_id: Mapped[uuid.UUID] = fk("users.id", index=False)
    kind: Mapped[InboxKind] = enum_column(InboxKind)
    status: Mapped[InboxStatus] = enum_column(InboxStatus, default=InboxStatus.OPEN)
    title: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text, default="")
    task_id: Mapped[uuid.UUID | None] = fk("tasks.id", nullable=True, index=False)
    run_id: Mapped[uuid.UUID | None] = fk(
        "runs.id", nullable=True, ondelete="SET NULL", index=False
    )
    agent_id: Mapped[uuid.UUID | None] = fk("agents.id", nullable=True, index=False)
    machine_id: Mapped[uuid.UUID | None] = fk("machines.id", nullable=True, index=False)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(200))
    read_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
