"""Comments on a task's timeline: threads, tagged agents and teams, reactions."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, fk


class Comment(IdMixin, CreatedMixin, Base):
    __tablename__ = "comments"
    __table_args__ = (
        sa.CheckConstraint(
            "(author_user_id IS NULL) <> (author_agent_id IS NULL)", name="one_author"
        ),
    )

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    task_id: Mapped[uuid.UUID] = fk("tasks.id")
    # Threads are one level deep: a reply points at its thread's root comment.
    parent_id: Mapped[uuid.UUID | None] = fk("comments.id", nullable=True)
    author_user_id: Mapped[uuid.UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    author_agent_id: Mapped[uuid.UUID | None] = fk("agents.id", nullable=True, ondelete="SET NULL")
    # The run that wrote it, for comments an agent posted from inside a run.
    run_id: Mapped[uuid.UUID | None] = fk("runs.id", nullable=True, ondelete="SET NULL")
    body: Mapped[str] = mapped_column(sa.Text)
    edited_at: Mapped[datetime | None]


class CommentMention(IdMixin, Base):
    __tablename__ = "comment_mentions"
    __table_args__ = (
        sa.CheckConstraint("(agent_id IS NULL) <> (team_id IS NULL)", name="one_target"),
    )

    comment_id: Mapped[uuid.UUID] = fk("comments.id")
    agent_id: Mapped[uuid.UUID | None] = fk("agents.id", nullable=True)
    team_id: Mapped[uuid.UUID | None] = fk("teams.id", nullable=True)


class Reaction(IdMixin, CreatedMixin, Base):
    __tablename__ = "reactions"
    __table_args__ = (
        sa.UniqueConstraint("comment_id", "emoji", "user_id"),
        sa.UniqueConstraint("comment_id", "emoji", "agent_id"),
        sa.CheckConstraint("(user_id IS NULL) <> (agent_id IS NULL)", name="one_reactor"),
    )

    comment_id: Mapped[uuid.UUID] = fk("comments.id")
    emoji: Mapped[str] = mapped_column(sa.String(16))
    user_id: Mapped[uuid.UUID | None] = fk("users.id", nullable=True, index=False)
    agent_id: Mapped[uuid.UUID | None] = fk("agents.id", nullable=True, index=False)
