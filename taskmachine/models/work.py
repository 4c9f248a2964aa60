"""Projects, goals and tasks."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, enum_column, fk, utcnow
from taskmachine.models.enums import GoalStatus, TaskPriority, TaskStatus


class Project(IdMixin, CreatedMixin, Base):
    __tablename__ = "projects"

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    archived_at: Mapped[datetime | None]


class Goal(IdMixin, CreatedMixin, Base):
    __tablename__ = "goals"

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    project_id: Mapped[uuid.UUID | None] = fk("projects.id", nullable=True, ondelete="SET NULL")
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[GoalStatus] = enum_column(GoalStatus, default=GoalStatus.ACTIVE)
    lead_agent_id: Mapped[uuid.UUID | None] = fk("agents.id", nullable=True, ondelete="SET NULL")


class Task(IdMixin, CreatedMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "number"),
        sa.CheckConstraint(
            "assignee_user_id IS NULL OR assignee_agent_id IS NULL", name="one_assignee"
        ),
        sa.CheckConstraint(
            "reviewer_user_id IS NULL OR reviewer_agent_id IS NULL", name="one_reviewer"
        ),
        sa.Index("ix_tasks_board", "workspace_id", "status", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id", index=False)
    number: Mapped[int]
    title: Mapped[str] = mapped_column(sa.String(300))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[TaskStatus] = enum_column(TaskStatus, default=TaskStatus.TODO)
    priority: Mapped[TaskPriority] = enum_column(TaskPriority, default=TaskPriority.NONE)
    assignee_user_id: Mapped[uuid.UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    assignee_agent_id: Mapped[uuid.UUID | None] = fk(
        "agents.id", nullable=True, ondelete="SET NULL"
    )
    reviewer_user_id: Mapped[uuid.UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    reviewer_agent_id: Mapped[uuid.UUID | None] = fk(
        "agents.id", nullable=True, ondelete="SET NULL"
    )
    project_id: Mapped[uuid.UUID | None] = fk("projects.id", nullable=True, ondelete="SET NULL")
    goal_id: Mapped[uuid.UUID | None] = fk("goals.id", nullable=True, ondelete="SET NULL")
    parent_id: Mapped[uuid.UUID | None] = fk("tasks.id", nullable=True, ondelete="SET NULL")
    created_by_user_id: Mapped[uuid.UUID | None] = fk(
        "users.id", nullable=True, ondelete="SET NULL", index=False
    )
    created_by_agent_id: Mapped[uuid.UUID | None] = fk(
        "agents.id", nullable=True, ondelete="SET NULL", index=False
    )
    summary: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class TaskTag(Base):
    __tablename__ = "task_tags"

    task_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(sa.String(48), primary_key=True)
