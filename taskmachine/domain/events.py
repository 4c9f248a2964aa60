"""Live events collected during a transaction and published after it commits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

PENDING_KEY = "taskmachine.live"
KICK_KEY = "taskmachine.kick"


def board_topic(workspace_id: uuid.UUID) -> str:
    return f"board.{workspace_id}"


def task_topic(task_id: uuid.UUID) -> str:
    return f"task.{task_id}"


def run_topic(run_id: uuid.UUID) -> str:
    return f"run.{run_id}"


def chat_topic(chat_id: uuid.UUID) -> str:
    return f"chat.{chat_id}"


def machines_topic(workspace_id: uuid.UUID) -> str:
    return f"machines.{workspace_id}"


def inbox_topic(user_id: uuid.UUID) -> str:
    return f"inbox.{user_id}"


def emit(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    """Queue an event; taskmachine.live sends it once the session's transaction commits."""
    session.info.setdefault(PENDING_KEY, []).append((topic, payload))


def kick(session: AsyncSession, name: str) -> None:
    """Wake an in-process worker (e.g. "dispatch") once this transaction commits."""
    session.info.setdefault(KICK_KEY, set()).add(name)
