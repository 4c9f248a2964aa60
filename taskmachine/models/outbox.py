"""The transactional outbox: messages recorded with the change that caused them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin


class OutboxMessage(IdMixin, CreatedMixin, Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (sa.Index("ix_outbox_messages_pending", "published_at", "id"),)

    exchange: Mapped[str] = mapped_column(sa.String(120))
    routing_key: Mapped[str] = mapped_column(sa.String(255))
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    priority: Mapped[int] = mapped_column(default=0)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    published_at: Mapped[datetime | None]
