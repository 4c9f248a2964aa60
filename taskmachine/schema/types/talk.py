"""Comments, reactions, the task timeline, chats and the inbox."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from taskmachine import models as m
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import loaders
from taskmachine.schema.types.agents import Agent, Team
from taskmachine.schema.types.enums import InboxKind, InboxStatus, TimelineKind
from taskmachine.schema.types.runs import Run
from taskmachine.schema.types.work import Actor, Task, actor


@strawberry.type
class ReactionSummary:
    emoji: str
    count: int
    viewer_reacted: bool


@strawberry.type
class Comment:
    id: strawberry.ID
    body: str
    created_at: datetime
    edited_at: datetime | None
    _row: strawberry.Private[m.Comment]

    @classmethod
    def of(cls, row: m.Comment) -> Comment:
        return cls(
            id=strawberry.ID(str(row.id)),
            body=row.body,
            created_at=row.created_at,
            edited_at=row.edited_at,
            _row=row,
        )

    @strawberry.field
    def task_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.task_id))

    @strawberry.field(description="The thread's root comment; null for a root.")
    def parent_id(self) -> strawberry.ID | None:
        return strawberry.ID(str(self._row.parent_id)) if self._row.parent_id else None

    @strawberry.field
    def run_id(self) -> strawberry.ID | None:
        return strawberry.ID(str(self._row.run_id)) if self._row.run_id else None

    @strawberry.field
    async def author(self) -> Actor | None:
        return await actor(self._row.author_user_id, self._row.author_agent_id)

    @strawberry.field
    async def reply_count(self) -> int:
        return await loaders().reply_count_by_comment.load(self._row.id)

    @strawberry.field
    async def tagged_agents(self) -> list[Agent]:
        mentions = await loaders().mentions_by_comment.load(self._row.id)
        rows = await loaders().agent.load_many([x.agent_id for x in mentions if x.agent_id])
        return [Agent.of(r) for r in rows if r is not None]

    @strawberry.field
    async def tagged_teams(self) -> list[Team]:
        mentions = await loaders().mentions_by_comment.load(self._row.id)
        rows = await loaders().team.load_many([x.team_id for x in mentions if x.team_id])
        return [Team.of(r) for r in rows if r is not None]

    @strawberry.field
    async def reactions(self, info: Info) -> list[ReactionSummary]:
        rows = await loaders().reactions_by_comment.load(self._row.id)
        principal = await info.context.principal()
        counts = Counter(r.emoji for r in rows)
        mine = {
            r.emoji
            for r in rows
            if principal is not None
            and (
                (principal.is_agent and r.agent_id == principal.agent_id)
                or (not principal.is_agent and r.user_id == principal.user_id)
            )
        }
        return [
            ReactionSummary(emoji=e, count=c, viewer_reacted=e in mine)
            for e, c in sorted(counts.items())
        ]


@strawberry.type
class TimelineEvent:
    id: strawberry.ID
    kind: TimelineKind
    data: JSON
    created_at: datetime
    _row: strawberry.Private[m.TimelineEvent]

    @classmethod
    def of(cls, row: m.TimelineEvent) -> TimelineEvent:
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=row.kind,
            data=cast(JSON, row.data),
            created_at=row.created_at,
            _row=row,
        )

    @strawberry.field
    def task_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.task_id))

    @strawberry.field
    async def actor(self) -> Actor | None:
        return await actor(self._row.actor_user_id, self._row.actor_agent_id)

    @strawberry.field
    async def comment(self) -> Comment | None:
        if self._row.comment_id is None:
            return None
        row = await loaders().comment.load(self._row.comment_id)
        return Comment.of(row) if row else None

    @strawberry.field
    async def run(self) -> Run | None:
        if self._row.run_id is None:
            return None
        row = await loaders().run.load(self._row.run_id)
        return Run.of(row) if row else None


@strawberry.type
class Chat:
    id: strawberry.ID
    title: str
    created_at: datetime
    _row: strawberry.Private[m.Chat]

    @classmethod
    def of(cls, row: m.Chat) -> Chat:
        return cls(
            id=strawberry.ID(str(row.id)), title=row.title, created_at=row.created_at, _row=row
        )

    @strawberry.field
    async def agent(self) -> Agent:
        row = await loaders().agent.load(self._row.agent_id)
        assert row is not None
        return Agent.of(row)


@strawberry.type
class ChatMessage:
    id: strawberry.ID
    body: str
    created_at: datetime
    _row: strawberry.Private[m.ChatMessage]

    @classmethod
    def of(cls, row: m.ChatMessage) -> ChatMessage:
        return cls(
            id=strawberry.ID(str(row.id)), body=row.body, created_at=row.created_at, _row=row
        )

    @strawberry.field
    def chat_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.chat_id))

    @strawberry.field
    def run_id(self) -> strawberry.ID | None:
        return strawberry.ID(str(self._row.run_id)) if self._row.run_id else None

    @strawberry.field
    async def author(self) -> Actor | None:
        return await actor(self._row.author_user_id, self._row.author_agent_id)


@strawberry.type
class InboxItem:
    id: strawberry.ID
    kind: InboxKind
    status: InboxStatus
    title: str
    body: str
    data: JSON
    created_at: datetime
    read_at: datetime | None
    resolved_at: datetime | None
    _row: strawberry.Private[m.InboxItem]

    @classmethod
    def of(cls, row: m.InboxItem) -> InboxItem:
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=row.kind,
            status=row.status,
            title=row.title,
            body=row.body,
            data=cast(JSON, row.data),
            created_at=row.created_at,
            read_at=row.read_at,
            resolved_at=row.resolved_at,
            _row=row,
        )

    @strawberry.field
    def workspace_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.workspace_id))

    @strawberry.field
    async def task(self) -> Task | None:
        if self._row.task_id is None:
            return None
        row = await loaders().task.load(self._row.task_id)
        return Task.of(row) if row else None

    @strawberry.field
    async def agent(self) -> Agent | None:
        if self._row.agent_id is None:
            return None
        row = await loaders().agent.load(self._row.agent_id)
        return Agent.of(row) if row else None
