"""Discuss: chats with an agent and their messages."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth.principal import Principal
from taskmachine.domain import access, validate
from taskmachine.domain.errors import Forbidden
from taskmachine.domain.events import chat_topic, emit
from taskmachine.domain.lookup import in_workspace, visible
from taskmachine.models import Agent, Chat, ChatMessage


async def create_chat(
    session: AsyncSession,
    principal: Principal,
    workspace_id: uuid.UUID,
    agent_id: uuid.UUID,
    title: str,
) -> Chat:
    await access.require(session, principal, workspace_id, "chat.use")
    agent = await in_workspace(session, Agent, agent_id, workspace_id, "agentId")
    chat = Chat(
        workspace_id=workspace_id,
        agent_id=agent.id,
        title=validate.text(title, "title", max_length=200, required=False)
        or f"Chat with {agent.name}",
        created_by_user_id=principal.user_id,
    )
    session.add(chat)
    await session.flush()
    return chat


async def post_message(
    session: AsyncSession, principal: Principal, chat_id: uuid.UUID, body: str
) -> ChatMessage:
    chat, _ = await visible(session, principal, Chat, chat_id, "chat")
    await access.require(session, principal, chat.workspace_id, "chat.use")
    if principal.is_agent and principal.agent_id != chat.agent_id:
        raise Forbidden("only the chat's own agent may reply in it")
    message = ChatMessage(
        chat_id=chat.id,
        author_user_id=None if principal.is_agent else principal.user_id,
        author_agent_id=principal.agent_id,
        run_id=principal.run_id,
        body=validate.text(body, "body", max_length=50_000),
    )
    session.add(message)
    await session.flush()
    emit(session, chat_topic(chat.id), {"message_id": str(message.id)})
    from taskmachine.loop.triggers import on_chat_message  # the loop builds on the domain

    await on_chat_message(session, message)
    await session.flush()
    return message
