"""Comments, reactions, the task timeline, chats and the inbox."""

from __future__ import annotations

import sqlalchemy as sa
import strawberry

from taskmachine import models as m
from taskmachine.domain import access, chats, comments
from taskmachine.domain.errors import Forbidden, NotFound
from taskmachine.domain.lookup import visible
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, ident, need_id, principal
from taskmachine.schema.ops.listing import page
from taskmachine.schema.pagination import Connection
from taskmachine.schema.types.enums import InboxKind, InboxStatus
from taskmachine.schema.types.talk import Chat, ChatMessage, Comment, InboxItem, TimelineEvent


@strawberry.input
class PostCommentInput:
    task_id: strawberry.ID
    body: str
    parent_id: strawberry.ID | None = strawberry.field(
        default=None, description="Reply in this comment's thread."
    )
    agent_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Tag agents."
    )
    team_ids: list[strawberry.ID] | None = strawberry.field(default=None, description="Tag teams.")


async def _task_workspace(info: Info, task_id: strawberry.ID) -> tuple[object, m.Task]:
    caller = await principal(info)
    async with db() as session:
        task, _ = await visible(session, caller, m.Task, need_id(task_id, "taskId"), "task")
    return caller, task


@strawberry.type
class Query:
    @strawberry.field(description="Root comments of a task, or the replies of one thread.")
    async def comments(
        self,
        info: Info,
        task_id: strawberry.ID,
        thread_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Comment]:
        _, task = await _task_workspace(info, task_id)
        query = sa.select(m.Comment).where(m.Comment.task_id == task.id)
        if thread_id is None:
            query = query.where(m.Comment.parent_id.is_(None))
        else:
            query = query.where(m.Comment.parent_id == need_id(thread_id, "threadId"))
        return await page(info, query, m.Comment.id, Comment.of, first=first, after=after)

    @strawberry.field(description="Everything that happened to a task, oldest first.")
    async def timeline(
        self, info: Info, task_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[TimelineEvent]:
        _, task = await _task_workspace(info, task_id)
        query = sa.select(m.TimelineEvent).where(m.TimelineEvent.task_id == task.id)
        return await page(
            info, query, m.TimelineEvent.id, TimelineEvent.of, first=first, after=after
        )

    @strawberry.field
    async def chats(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        agent_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Chat]:
        wid = need_id(workspace_id, "workspaceId")
        query = sa.select(m.Chat).where(m.Chat.workspace_id == wid)
        if agent_id is not None:
            query = query.where(m.Chat.agent_id == need_id(agent_id, "agentId"))
        return await page(
            info,
            query,
            m.Chat.id,
            Chat.of,
            first=first,
            after=after,
            workspace_id=wid,
            descending=True,
        )

    @strawberry.field
    async def chat(self, info: Info, id: strawberry.ID) -> Chat:
        caller = await principal(info)
        async with db() as session:
            row, _ = await visible(session, caller, m.Chat, need_id(id, "id"), "chat")
        return Chat.of(row)

    @strawberry.field
    async def chat_messages(
        self, info: Info, chat_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[ChatMessage]:
        caller = await principal(info)
        async with db() as session:
            chat, _ = await visible(session, caller, m.Chat, need_id(chat_id, "chatId"), "chat")
        query = sa.select(m.ChatMessage).where(m.ChatMessage.chat_id == chat.id)
        return await page(info, query, m.ChatMessage.id, ChatMessage.of, first=first, after=after)

    @strawberry.field(description="The caller's own inbox, newest first.")
    async def inbox(
        self,
        info: Info,
        workspace_id: strawberry.ID | None = None,
        status: InboxStatus | None = None,
        kind: InboxKind | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[InboxItem]:
        caller = await principal(info)
        if caller.user_id is None:
            raise Forbidden("only people have an inbox")
        query = sa.select(m.InboxItem).where(
            m.InboxItem.user_id == caller.user_id,
            # Items from a workspace the person has left stay hidden with the rest of it.
            m.InboxItem.workspace_id.in_(
                sa.select(m.Membership.workspace_id).where(m.Membership.user_id == caller.user_id)
            ),
        )
        wid = ident(workspace_id, "workspaceId")
        if wid is not None:
            query = query.where(m.InboxItem.workspace_id == wid)
        if status is not None:
            query = query.where(m.InboxItem.status == status)
        if kind is not None:
            query = query.where(m.InboxItem.kind == kind)
        return await page(
            info,
            query,
            m.InboxItem.id,
            InboxItem.of,
            first=first,
            after=after,
            workspace_id=wid,
            descending=True,
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Comment on a task, or reply in a thread; may tag agents and teams."
    )
    async def post_comment(self, info: Info, input: PostCommentInput) -> Comment:
        caller = await principal(info)
        async with db() as session:
            row = await comments.post_comment(
                session,
                caller,
                need_id(input.task_id, "taskId"),
                input.body,
                ident(input.parent_id, "parentId"),
                [need_id(a, "agentIds") for a in input.agent_ids or []],
                [need_id(t, "teamIds") for t in input.team_ids or []],
            )
        return Comment.of(row)

    @strawberry.mutation(description="Add a reaction (on: true) or take it back (on: false).")
    async def react(
        self, info: Info, comment_id: strawberry.ID, emoji: str, on: bool = True
    ) -> Comment:
        caller = await principal(info)
        async with db() as session:
            row = await comments.react(session, caller, need_id(comment_id, "commentId"), emoji, on)
        return Comment.of(row)

    @strawberry.mutation
    async def create_chat(
        self, info: Info, workspace_id: strawberry.ID, agent_id: strawberry.ID, title: str = ""
    ) -> Chat:
        caller = await principal(info)
        async with db() as session:
            row = await chats.create_chat(
                session,
                caller,
                need_id(workspace_id, "workspaceId"),
                need_id(agent_id, "agentId"),
                title,
            )
        return Chat.of(row)

    @strawberry.mutation
    async def send_chat_message(self, info: Info, chat_id: strawberry.ID, body: str) -> ChatMessage:
        caller = await principal(info)
        async with db() as session:
            row = await chats.post_message(session, caller, need_id(chat_id, "chatId"), body)
        return ChatMessage.of(row)

    @strawberry.mutation(description="Mark an inbox item read, or resolve it.")
    async def update_inbox_item(
        self, info: Info, id: strawberry.ID, read: bool | None = None, resolved: bool | None = None
    ) -> InboxItem:
        caller = await principal(info)
        async with db() as session:
            item = await session.get(m.InboxItem, need_id(id, "id"))
            if item is None or item.user_id != caller.user_id:
                raise NotFound("no such inbox item")
            await access.require(session, caller, item.workspace_id, "inbox.act")
            now = m.utcnow()
            if read is not None:
                item.read_at = now if read else None
            if resolved is not None:
                item.status = m.InboxStatus.RESOLVED if resolved else m.InboxStatus.OPEN
                item.resolved_at = now if resolved else None
            await session.flush()
        return InboxItem.of(item)
