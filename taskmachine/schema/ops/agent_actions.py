"""What agents do from inside a run (`tama …`), and people's answers from their inbox."""

from __future__ import annotations

import strawberry

from taskmachine import models as m
from taskmachine.domain import agent_actions
from taskmachine.domain.errors import Forbidden
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, need_id, principal
from taskmachine.schema.types.agents import Agent
from taskmachine.schema.types.runs import Run
from taskmachine.schema.types.talk import InboxItem
from taskmachine.schema.types.work import Task


@strawberry.type
class RunContext:
    run: Run
    agent: Agent
    task: Task | None
    chat_id: strawberry.ID | None
    workspace_id: strawberry.ID


@strawberry.input
class AskInput:
    task_id: strawberry.ID
    question: str


@strawberry.input
class ApprovalRequestInput:
    task_id: strawberry.ID
    request: str


@strawberry.type
class Query:
    @strawberry.field(description="For a run token: the run, its agent and what it is about.")
    async def run_context(self, info: Info) -> RunContext:
        caller = await principal(info)
        if caller.run_id is None:
            raise Forbidden("only a run's own token can ask this")
        async with db() as session:
            run = await session.get(m.Run, caller.run_id)
            agent = await session.get(m.Agent, caller.agent_id)
            assert run is not None and agent is not None
            task = await session.get(m.Task, run.task_id) if run.task_id else None
        return RunContext(
            run=Run.of(run),
            agent=Agent.of(agent),
            task=Task.of(task) if task else None,
            chat_id=strawberry.ID(str(run.chat_id)) if run.chat_id else None,
            workspace_id=strawberry.ID(str(run.workspace_id)),
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Store the task's completion summary.")
    async def set_task_summary(self, info: Info, task_id: strawberry.ID, summary: str) -> Task:
        caller = await principal(info)
        async with db() as session:
            return Task.of(
                await agent_actions.set_summary(
                    session, caller, need_id(task_id, "taskId"), summary
                )
            )

    @strawberry.mutation(
        description="Block the task: status BLOCKED, the reason posted, an inbox item raised."
    )
    async def block_task(self, info: Info, task_id: strawberry.ID, reason: str) -> Task:
        caller = await principal(info)
        async with db() as session:
            return Task.of(
                await agent_actions.block(session, caller, need_id(task_id, "taskId"), reason)
            )

    @strawberry.mutation(description="Record a decision to do nothing, and why, on the timeline.")
    async def record_no_action(self, info: Info, task_id: strawberry.ID, reason: str) -> Task:
        caller = await principal(info)
        async with db() as session:
            return Task.of(
                await agent_actions.record_no_action(
                    session, caller, need_id(task_id, "taskId"), reason
                )
            )

    @strawberry.mutation(description="Ask a question about a task; it lands in people's inbox.")
    async def ask_question(self, info: Info, input: AskInput) -> list[InboxItem]:
        caller = await principal(info)
        async with db() as session:
            items = await agent_actions.ask(
                session,
                caller,
                need_id(input.task_id, "taskId"),
                input.question,
                m.InboxKind.QUESTION,
            )
        return [InboxItem.of(i) for i in items]

    @strawberry.mutation(
        description="Request an approval before acting; it lands in people's inbox."
    )
    async def request_approval(self, info: Info, input: ApprovalRequestInput) -> list[InboxItem]:
        caller = await principal(info)
        async with db() as session:
            items = await agent_actions.ask(
                session,
                caller,
                need_id(input.task_id, "taskId"),
                input.request,
                m.InboxKind.APPROVAL,
            )
        return [InboxItem.of(i) for i in items]

    @strawberry.mutation(
        description="Answer a question (or a block) from the inbox: a reply in the agent's thread."
    )
    async def answer_inbox_item(self, info: Info, id: strawberry.ID, answer: str) -> InboxItem:
        caller = await principal(info)
        async with db() as session:
            return InboxItem.of(
                await agent_actions.respond(session, caller, need_id(id, "id"), answer)
            )

    @strawberry.mutation(description="Approve or deny an approval request from the inbox.")
    async def decide_approval(
        self, info: Info, id: strawberry.ID, approve: bool, note: str = ""
    ) -> InboxItem:
        caller = await principal(info)
        async with db() as session:
            return InboxItem.of(
                await agent_actions.respond(session, caller, need_id(id, "id"), note, approve)
            )
