"""run queue and control

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 06:36:01.570945
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import taskmachine.models.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue_reason", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("queue_position", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("token_nonce", sa.String(length=32), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("permission", sa.String(length=16), nullable=False, server_default="safe")
        )
        batch_op.add_column(
            sa.Column(
                "cancel_requested_at",
                taskmachine.models.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("clean_worktree", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("follows_run_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("diff_stat", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("resume_session_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("resume_session_id")
        batch_op.drop_column("diff_stat")
        batch_op.drop_column("follows_run_id")
        batch_op.drop_column("clean_worktree")
        batch_op.drop_column("cancel_requested_at")
        batch_op.drop_column("permission")
        batch_op.drop_column("token_nonce")
        batch_op.drop_column("queue_position")
        batch_op.drop_column("queue_reason")
