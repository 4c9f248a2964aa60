"""Discuss: chats with one agent, and their messages."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, fk


class Chat(IdMixin, CreatedMixin, Base):
    __tablename__ = "chats"

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    agent_id: Mapped[uuid.UUID] = fk("agents.id")
    title: Mapped[str] = mapped_column(sa.String(200), default="")
    created_by_user_id: Mapped[uuid.UUID | None] = fk(
        "users.id", nullable=True, ondelete="SET NULL", index=False
    )


class ChatMessage(IdMixin, CreatedMixin, Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        sa.CheckConstraint(
            "(author_user_id IS NULL) <> (author_agent_id IS NULL)", name="one_author"
        ),
    )

    chat_id: Mapped[uuid.UUID] = fk("chats.id")
    author_user_id: Mapped[uuid.UUID | None] = fk(
        "users.id", nullable=True, ondelete="SET NULL", index=False
    )
    author_agent_id: Mapped[uuid.UUID | None] = fk(
        "agents.id", nullable=True, ondelete="SET NULL", index=False
    )
    run_id: Mapped[uuid.UUID | None] = fk(
        "runs.id", nullable=True, ondelete="SET NULL", index=False
    )
    body: Mapped[str] = mapped_column(sa.Text)
