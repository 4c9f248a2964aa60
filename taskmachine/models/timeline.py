"""The task timeline: every change to a task, in order, with who made it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, enum_column, fk
from taskmachine.models.enums import TimelineKind


class TimelineEvent(IdMixin, CreatedMixin, Base):
    __tablename__ = "timeline_events"

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    task_id: Mapped[uuid.UUID] = fk("tasks.id")
    kind: Mapped[TimelineKind] = enum_column(TimelineKind)
    actor_user_id: Mapped[uuid.UUID | None] = fk(
        "users.id", nullable=True, ondelete="SET NULL", index=False
    )
    actor_agent_id: Mapped[uuid.UUID | None] = fk(
        "agents.id", nullable=True, ondelete="SET NULL", index=False
    )
    comment_id: Mapped[uuid.UUID | None] = fk("comments.id", nullable=True, index=False)
    run_id: Mapped[uuid.UUID | None] = fk(
        "runs.id", nullable=True, ondelete="SET NULL", index=False
    )
    # Kind-specific details, e.g. {"from": "todo", "to": "in_progress"}.
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
