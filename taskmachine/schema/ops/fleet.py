"""Machines and runtimes (read side; connecting machines lives in taskmachine.machines)."""

from __future__ import annotations

import sqlalchemy as sa
import strawberry

from taskmachine import models as m
from taskmachine.domain import access
from taskmachine.domain.errors import NotFound
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, need_id, principal
from taskmachine.schema.ops.listing import page
from taskmachine.schema.pagination import Connection
from taskmachine.schema.types.fleet import Machine


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
            workspace_ids = (
                await session.scalars(
                    sa.select(m.MachineWorkspace.workspace_id).where(
                        m.MachineWorkspace.machine_id == machine_id
                    )
                )
            ).all()
            for workspace_id in workspace_ids:
                if await access.role_in(session, caller, workspace_id) is not None:
                    break
            else:
                row = None
        if row is None:
            raise NotFound("no such machine")
        return Machine.of(row)
