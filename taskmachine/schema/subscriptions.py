"""Live subscriptions over graphql-transport-ws.

Each fetches what it yields in a fresh scope per event (no stale DataLoader caches on a
long-lived connection). Access is checked when the subscription starts.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import strawberry

from taskmachine import models as m
from taskmachine.domain import access
from taskmachine.domain.events import board_topic, chat_topic, machines_topic, run_topic, task_topic
from taskmachine.domain.lookup import WorkspaceScoped, visible
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import need_id
from taskmachine.schema.scope import event_scope
from taskmachine.schema.types.enums import TimelineKind
from taskmachine.schema.types.fleet import Machine
from taskmachine.schema.types.runs import Run, TranscriptChunk
from taskmachine.schema.types.talk import ChatMessage, TimelineEvent
from taskmachine.schema.types.work import Task


@strawberry.type
class BoardEvent:
    kind: TimelineKind
    task: Task


async def _authorize(
    info: Info, model: type[WorkspaceScoped], row_id: uuid.UUID, what: str
) -> None:
    caller = await info.context.require_principal()
    async with event_scope(info.context.state) as scope, scope.db() as session:
        await visible(session, caller, model, row_id, what)


async def _follow(
    info: Info,
    topic: str,
    model: type[Any],
    row_id: Callable[[dict[str, Any]], uuid.UUID],
    *,
    skip: Callable[[dict[str, Any]], bool] = lambda _payload: False,
    missing_too: bool = False,
) -> AsyncGenerator[tuple[dict[str, Any], Any]]:
    """Each event on `topic` with its row read fresh, in a scope of its own that stays open
    while the caller yields (the client's selection resolves inside it)."""
    async with info.context.state.hub.subscribe(topic) as queue:
        while True:
            payload = await queue.get()
            if skip(payload):
                continue
            async with event_scope(info.context.state) as scope:
                async with scope.db() as session:
                    row = await session.get(model, row_id(payload))
                if row is not None or missing_too:
                    yield payload, row


def _is_output(payload: dict[str, Any]) -> bool:
    return bool(payload.get("kind") == "output")


@strawberry.type
class TaskSubscription:
    @strawberry.subscription(description="Every change to a task on the workspace's board.")
    async def board_changed(
        self, info: Info, workspace_id: strawberry.ID
    ) -> AsyncGenerator[BoardEvent]:
        wid = need_id(workspace_id, "workspaceId")
        caller = await info.context.require_principal()
        async with event_scope(info.context.state) as scope, scope.db() as session:
            await access.require_member(session, caller, wid)
        events = _follow(info, board_topic(wid), m.Task, lambda p: uuid.UUID(p["task_id"]))
        async for payload, row in events:
            yield BoardEvent(kind=m.TimelineKind(payload["kind"]), task=Task.of(row))

    @strawberry.subscription(description="New events on a task's timeline, as they commit.")
    async def task_timeline(
        self, info: Info, task_id: strawberry.ID
    ) -> AsyncGenerator[TimelineEvent]:
        tid = need_id(task_id, "taskId")
        await _authorize(info, m.Task, tid, "task")
        events = _follow(info, task_topic(tid), m.TimelineEvent, lambda p: uuid.UUID(p["event_id"]))
        async for _, row in events:
            yield TimelineEvent.of(row)

    @strawberry.subscription(
        description="A run's transcript: what is persisted first, then live chunks, "
        "with no gap and no duplicate."
    )
    async def run_transcript(
        self, info: Info, run_id: strawberry.ID
    ) -> AsyncGenerator[TranscriptChunk]:
        rid = need_id(run_id, "runId")
        await _authorize(info, m.Run, rid, "run")
        # Listen before reading what is stored, so nothing written in between is missed.
        async with info.context.state.hub.subscribe(run_topic(rid)) as queue:
            last = (0, -1)
            async with event_scope(info.context.state) as scope, scope.db() as session:
                stored = (
                    await session.scalars(
                        sa.select(m.TranscriptChunk)
                        .where(m.TranscriptChunk.run_id == rid)
                        .order_by(m.TranscriptChunk.attempt, m.TranscriptChunk.seq)
                    )
                ).all()
            for row in stored:
                last = (row.attempt, row.seq)
                yield TranscriptChunk.of(row)
            while True:
                payload = await queue.get()
                if payload.get("kind") != "output":
                    continue
                key = (int(payload["attempt"]), int(payload["seq"]))
                if key <= last:
                    continue
                last = key
                yield TranscriptChunk(
                    attempt=key[0],
                    seq=key[1],
                    events=payload["events"],
                    created_at=datetime.fromisoformat(payload["created_at"]),
                )

    @strawberry.subscription(
        description="A run's status, attempt and place in the queue, as they change."
    )
    async def run_changed(self, info: Info, run_id: strawberry.ID) -> AsyncGenerator[Run]:
        rid = need_id(run_id, "runId")
        await _authorize(info, m.Run, rid, "run")
        # Transcript output rides on the same topic; only status and queue changes count here.
        async for _, row in _follow(info, run_topic(rid), m.Run, lambda _p: rid, skip=_is_output):
            yield Run.of(row)

    @strawberry.subscription(description="New messages in a chat.")
    async def chat_messages(
        self, info: Info, chat_id: strawberry.ID
    ) -> AsyncGenerator[ChatMessage]:
        cid = need_id(chat_id, "chatId")
        await _authorize(info, m.Chat, cid, "chat")
        events = _follow(info, chat_topic(cid), m.ChatMessage, lambda p: uuid.UUID(p["message_id"]))
        async for _, row in events:
            yield ChatMessage.of(row)


@strawberry.type
class MachineChange:
    machine_id: strawberry.ID
    machine: Machine | None = strawberry.field(description="Null when the machine was removed.")


@strawberry.type
class FleetSubscription:
    @strawberry.subscription(
        description="A machine of the workspace came online, went quiet, changed its runtimes, "
        "was approved or removed."
    )
    async def machines_changed(
        self, info: Info, workspace_id: strawberry.ID
    ) -> AsyncGenerator[MachineChange]:
        wid = need_id(workspace_id, "workspaceId")
        caller = await info.context.require_principal()
        async with event_scope(info.context.state) as scope, scope.db() as session:
            await access.require_member(session, caller, wid)
        events = _follow(
            info,
            machines_topic(wid),
            m.Machine,
            lambda p: uuid.UUID(p["machine_id"]),
            missing_too=True,  # a removed machine is news too
        )
        async for payload, row in events:
            yield MachineChange(
                machine_id=strawberry.ID(payload["machine_id"]),
                machine=Machine.of(row) if row is not None else None,
            )
