"""Machines running the tama daemon, their approvals and credentials, and detected runtimes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from taskmachine.models.base import Base, CreatedMixin, IdMixin, enum_column, fk
from taskmachine.models.enums import ApprovalStatus, MachineStatus


class Machine(IdMixin, CreatedMixin, Base):
    __tablename__ = "machines"

    name: Mapped[str] = mapped_column(sa.String(120))
    hostname: Mapped[str] = mapped_column(sa.String(255), default="")
    os: Mapped[str] = mapped_column(sa.String(64), default="")
    owner_user_id: Mapped[uuid.UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    cli_version: Mapped[str] = mapped_column(sa.String(32), default="")
    status: Mapped[MachineStatus] = enum_column(MachineStatus, default=MachineStatus.OFFLINE)
    last_heartbeat_at: Mapped[datetime | None]
    execution_root: Mapped[str] = mapped_column(sa.String(1024), default="")
    capacity: Mapped[int] = mapped_column(default=0)
    active_runs: Mapped[int] = mapped_column(default=0)
    update_status: Mapped[str | None] = mapped_column(sa.String(64))
    update_requested_at: Mapped[datetime | None]
    # The digest that came with the runtime list the rows below were written from: a heartbeat
    # that carries only this digest says the list is unchanged (see wire.messages.Heartbeat).
    runtimes_digest: Mapped[str | None] = mapped_column(sa.String(32))


class MachineWorkspace(Base):
    __tablename__ = "machine_workspaces"

    machine_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("machines.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class MachineApproval(IdMixin, CreatedMixin, Base):
    """A `tama setup` request waiting for a signed-in person to approve it."""

    __tablename__ = "machine_approvals"

    # The daemon polls with this secret; the browser page is addressed by the user code.
    poll_token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    hostname: Mapped[str] = mapped_column(sa.String(255), default="")
    os: Mapped[str] = mapped_column(sa.String(64), default="")
    cli_version: Mapped[str] = mapped_column(sa.String(32), default="")
    status: Mapped[ApprovalStatus] = enum_column(ApprovalStatus, default=ApprovalStatus.PENDING)
    expires_at: Mapped[datetime]
    decided_by_user_id: Mapped[uuid.UUID | None] = fk(
        "users.id", nullable=True, ondelete="SET NULL"
    )
    machine_id: Mapped[uuid.UUID | None] = fk("machines.id", nullable=True, ondelete="CASCADE")
    # Credentials handed over once on the first poll after approval, then cleared.
    handoff: Mapped[dict[str, Any] | None]


class MachineToken(IdMixin, CreatedMixin, Base):
    __tablename__ = "machine_tokens"

    machine_id: Mapped[uuid.UUID] = fk("machines.id")
    kind: Mapped[str] = mapped_column(sa.String(16))  # "access" | "refresh"
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Runtime(IdMixin, CreatedMixin, Base):
    """A coding tool the daemon detected on a machine (claude, codex)."""

    __tablename__ = "runtimes"
    __table_args__ = (sa.UniqueConstraint("machine_id", "name"),)

    machine_id: Mapped[uuid.UUID] = fk("machines.id")
    name: Mapped[str] = mapped_column(sa.String(32))
    provider: Mapped[str] = mapped_column(sa.String(32), default="")
    path: Mapped[str] = mapped_column(sa.String(1024), default="")
    version: Mapped[str] = mapped_column(sa.String(64), default="")
    # Models and reasoning levels as the tool reports them.
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    available: Mapped[bool] = mapped_column(default=True)
    # New runtimes start disabled: detection is not approval.
    enabled: Mapped[bool] = mapped_column(default=False)
    last_reported_at: Mapped[datetime | None]
    stale_notified_at: Mapped[datetime | None]
