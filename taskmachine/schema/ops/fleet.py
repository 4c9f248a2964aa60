"""Machines and runtimes: connecting a machine (browser approval), tokens, runtimes, updates."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import strawberry

from taskmachine import models as m
from taskmachine.domain import access
from taskmachine.domain import machines as domain
from taskmachine.domain.errors import Conflict, Forbidden, NotFound
from taskmachine.domain.events import emit, machines_topic
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, need_id, principal
from taskmachine.schema.ops.listing import page
from taskmachine.schema.pagination import Connection
from taskmachine.schema.types.enums import ApprovalStatus
from taskmachine.schema.types.fleet import Machine, Runtime
from taskmachine.wire.control import UpdateRequest


@strawberry.input
class MachineApprovalRequestInput:
    name: str
    hostname: str = ""
    os: str = ""
    cli_version: str = ""


@strawberry.type
class MachineApprovalTicket:
    user_code: str = strawberry.field(description="Shown to the person approving, to compare.")
    poll_token: str = strawberry.field(description="Secret: the CLI polls with it.")
    approval_url: str
    expires_at: datetime
    poll_interval_seconds: float


@strawberry.type
class MachineTokens:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str


@strawberry.type
class MachineCredentials:
    machine_id: strawberry.ID
    machine_name: str
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    amqp_url: str = strawberry.field(description="The broker URL with the machine's own user.")
    workspace_ids: list[strawberry.ID]


@strawberry.type
class MachineApprovalPoll:
    status: ApprovalStatus
    credentials: MachineCredentials | None = strawberry.field(
        description="Returned once, on the first poll after approval."
    )


@strawberry.type
class MachineApproval:
    user_code: str
    name: str
    hostname: str
    os: str
    cli_version: str
    status: ApprovalStatus
    expires_at: datetime
    _row: strawberry.Private[m.MachineApproval]

    @classmethod
    def of(cls, row: m.MachineApproval) -> MachineApproval:
        return cls(
            user_code=row.user_code,
            name=row.name,
            hostname=row.hostname,
            os=row.os,
            cli_version=row.cli_version,
            status=row.status,
            expires_at=row.expires_at,
            _row=row,
        )

    @strawberry.field
    def machine_id(self) -> strawberry.ID | None:
        return strawberry.ID(str(self._row.machine_id)) if self._row.machine_id else None


def _broker(info: Info) -> Any:
    return info.context.state.services.get("broker")


def _require_broker(info: Info) -> Any:
    broker = _broker(info)
    if broker is None:
        raise Conflict("the server runs without a broker; machines cannot connect")
    return broker


@strawberry.type
class Query:
    @strawberry.field(description="Machines connected to a workspace.")
    async def machines(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Machine]:
        wid = need_id(workspace_id, "workspaceId")
        query = sa.select(m.Machine).where(
            m.Machine.id.in_(
                sa.select(m.MachineWorkspace.machine_id).where(
                    m.MachineWorkspace.workspace_id == wid
                )
            )
        )
        return await page(
            info, query, m.Machine.id, Machine.of, first=first, after=after, workspace_id=wid
        )

    @strawberry.field
    async def machine(self, info: Info, id: strawberry.ID) -> Machine:
        caller = await principal(info)
        machine_id = need_id(id, "id")
        async with db() as session:
            row = await session.get(m.Machine, machine_id)
            visible = False
            for workspace_id in await domain.machine_workspaces(session, machine_id):
                if await access.role_in(session, caller, workspace_id) is not None:
                    visible = True
                    break
        if row is None or not visible:
            raise NotFound("no such machine")
        return Machine.of(row)

    @strawberry.field(description="Runtimes of a workspace's machines.")
    async def runtimes(
        self, info: Info, workspace_id: strawberry.ID, enabled_only: bool = False
    ) -> list[Runtime]:
        caller = await principal(info)
        wid = need_id(workspace_id, "workspaceId")
        async with db() as session:
            await access.require_member(session, caller, wid)
            query = (
                sa.select(m.Runtime)
                .join(m.MachineWorkspace, m.MachineWorkspace.machine_id == m.Runtime.machine_id)
                .where(m.MachineWorkspace.workspace_id == wid)
                .order_by(m.Runtime.machine_id, m.Runtime.name)
            )
            if enabled_only:
                query = query.where(m.Runtime.enabled.is_(True))
            rows = (await session.scalars(query)).all()
        return [Runtime.of(r) for r in rows]

    @strawberry.field(
        description="The machine whose access token makes this request (tama status)."
    )
    async def this_machine(self, info: Info) -> Machine:
        caller = await principal(info, machine=True)
        if caller.machine_id is None:
            raise Forbidden("only a machine's own access token can ask this")
        async with db() as session:
            row = await session.get(m.Machine, caller.machine_id)
        if row is None:
            raise NotFound("this machine was removed; run tama setup again")
        return Machine.of(row)

    @strawberry.field(description="A pending `tama setup` request, by the code the CLI shows.")
    async def machine_approval(self, info: Info, code: str) -> MachineApproval:
        caller = await principal(info)
        async with db() as session:
            return MachineApproval.of(await domain.approval_by_code(session, caller, code))


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Start connecting a machine (called by `tama setup`).")
    async def request_machine_approval(
        self, info: Info, input: MachineApprovalRequestInput
    ) -> MachineApprovalTicket:
        state = info.context.state
        async with db() as session:
            ticket = await domain.request_approval(
                session,
                state.hasher,
                state.settings,
                input.name,
                input.hostname,
                input.os,
                input.cli_version,
            )
        return MachineApprovalTicket(
            user_code=ticket.user_code,
            poll_token=ticket.poll_token,
            approval_url=ticket.approval_url,
            expires_at=ticket.expires_at,
            poll_interval_seconds=2.0,
        )

    @strawberry.mutation(description="Check on a setup request; hands credentials over once.")
    async def poll_machine_approval(self, info: Info, poll_token: str) -> MachineApprovalPoll:
        state = info.context.state
        async with db() as session:
            status, creds = await domain.poll(
                session, state.hasher, state.settings, _broker(info), poll_token
            )
        if creds is None:
            return MachineApprovalPoll(status=status, credentials=None)
        return MachineApprovalPoll(
            status=status,
            credentials=MachineCredentials(
                machine_id=strawberry.ID(str(creds.machine.id)),
                machine_name=creds.machine.name,
                access_token=creds.tokens.access_token,
                access_token_expires_at=creds.tokens.access_token_expires_at,
                refresh_token=creds.tokens.refresh_token,
                amqp_url=creds.amqp_url,
                workspace_ids=[strawberry.ID(str(w)) for w in creds.workspace_ids],
            ),
        )

    @strawberry.mutation(
        description="Trade a refresh token for a new pair; the old one stops working."
    )
    async def refresh_machine_token(self, info: Info, refresh_token: str) -> MachineTokens:
        state = info.context.state
        async with db() as session:
            issued = await domain.refresh(session, state.hasher, state.settings, refresh_token)
        return MachineTokens(
            access_token=issued.access_token,
            access_token_expires_at=issued.access_token_expires_at,
            refresh_token=issued.refresh_token,
        )

    @strawberry.mutation(description="Approve a setup request into one or more workspaces.")
    async def approve_machine(
        self, info: Info, code: str, workspace_ids: list[strawberry.ID]
    ) -> MachineApproval:
        caller = await principal(info)
        broker = _require_broker(info)
        ids = [need_id(w, "workspaceIds") for w in workspace_ids]
        async with db() as session:
            return MachineApproval.of(await domain.approve(session, caller, broker, code, ids))

    @strawberry.mutation
    async def deny_machine(self, info: Info, code: str) -> MachineApproval:
        caller = await principal(info)
        async with db() as session:
            return MachineApproval.of(await domain.deny(session, caller, code))

    @strawberry.mutation(description="Let agents use a runtime, or take it out of rotation.")
    async def set_runtime_enabled(
        self, info: Info, runtime_id: strawberry.ID, enabled: bool
    ) -> Runtime:
        caller = await principal(info)
        async with db() as session:
            row = await domain.set_runtime_enabled(
                session, caller, need_id(runtime_id, "runtimeId"), enabled
            )
        return Runtime.of(row)

    @strawberry.mutation(
        description="Remove a machine: its tokens stop working, its broker connection closes."
    )
    async def remove_machine(self, info: Info, machine_id: strawberry.ID) -> strawberry.ID:
        caller = await principal(info)
        async with db() as session:
            row = await domain.remove(
                session, caller, _broker(info), need_id(machine_id, "machineId")
            )
        return strawberry.ID(str(row.id))

    @strawberry.mutation(
        description="Queue an update: the daemon installs the newest tama and restarts."
    )
    async def request_machine_update(self, info: Info, machine_id: strawberry.ID) -> Machine:
        caller = await principal(info)
        broker = _require_broker(info)
        mid = need_id(machine_id, "machineId")
        settings = info.context.state.settings
        async with db() as session:
            machine = await domain.manageable_machine(session, caller, mid, "machine.manage")
            machine.update_requested_at = m.utcnow()
            await session.execute(
                sa.update(m.InboxItem)
                .where(
                    m.InboxItem.machine_id == mid,
                    m.InboxItem.kind == m.InboxKind.UPDATE_NUDGE,
                    m.InboxItem.status == m.InboxStatus.OPEN,
                )
                .values(status=m.InboxStatus.RESOLVED, resolved_at=m.utcnow())
            )
            await session.flush()
            for workspace_id in await domain.machine_workspaces(session, mid):
                emit(session, machines_topic(workspace_id), {"machine_id": str(mid)})
            # Published before commit: if the broker refuses, nothing is recorded as queued.
            await broker.publish_control(
                str(mid),
                UpdateRequest(
                    request_id=uuid.uuid4(), target_version=settings.latest_cli_version or None
                ),
            )
        return Machine.of(machine)
