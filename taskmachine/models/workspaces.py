"""Workspaces and who belongs to them, with which role."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, enum_column, fk
from taskmachine.models.enums import Role


class Workspace(IdMixin, CreatedMixin, Base):
    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(sa.String(120))
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # Tasks are numbered per workspace (a person says "task 12", not a UUID).
    task_counter: Mapped[int] = mapped_column(default=0)


class Membership(IdMixin, CreatedMixin, Base):
    __tablename__ = "memberships"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "user_id"),)

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    user_id: Mapped[uuid.UUID] = fk("users.id")
    role: Mapped[Role] = enum_column(Role)
