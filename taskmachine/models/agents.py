"""Agents (profiles) and teams with a lead."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, enum_column, fk
from taskmachine.models.enums import AutonomyLevel, Role


class Agent(IdMixin, CreatedMixin, Base):
    __tablename__ = "agents"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "handle"),)

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    name: Mapped[str] = mapped_column(sa.String(120))
    # What people type after @ to tag the agent.
    handle: Mapped[str] = mapped_column(sa.String(64))
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    instructions: Mapped[str] = mapped_column(sa.Text, default="")
    default_runtime_id: Mapped[uuid.UUID | None] = fk(
        "runtimes.id", nullable=True, ondelete="SET NULL"
    )
    model: Mapped[str | None] = mapped_column(sa.String(120))
    reasoning_level: Mapped[str | None] = mapped_column(sa.String(32))
    concurrency_limit: Mapped[int] = mapped_column(default=1)
    autonomy: Mapped[AutonomyLevel] = enum_column(AutonomyLevel, default=AutonomyLevel.LOW)
    memory: Mapped[str] = mapped_column(sa.Text, default="")
    # An agent's role is the floor of what it may do.
    role: Mapped[Role] = enum_column(Role, default=Role.MEMBER)
    may_steer_by_reaction: Mapped[bool] = mapped_column(default=False)
    archived_at: Mapped[datetime | None]


class Team(IdMixin, CreatedMixin, Base):
    __tablename__ = "teams"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "handle"),)

    workspace_id: Mapped[uuid.UUID] = fk("workspaces.id")
    name: Mapped[str] = mapped_column(sa.String(120))
    handle: Mapped[str] = mapped_column(sa.String(64))
    lead_agent_id: Mapped[uuid.UUID | None] = fk("agents.id", nullable=True, ondelete="SET NULL")


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
