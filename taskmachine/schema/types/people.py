"""People, workspaces, memberships, API tokens."""

from __future__ import annotations

from datetime import datetime

import strawberry

from taskmachine import models as m
from taskmachine.auth.permissions import permissions_for
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import loaders
from taskmachine.schema.types.enums import Role


@strawberry.type
class User:
    id: strawberry.ID
    name: str
    email: str
    created_at: datetime

    @classmethod
    def of(cls, row: m.User) -> User:
        return cls(
            id=strawberry.ID(str(row.id)), name=row.name, email=row.email, created_at=row.created_at
        )


@strawberry.type
class Workspace:
    id: strawberry.ID
    name: str
    slug: str
    created_at: datetime
    _row: strawberry.Private[m.Workspace]

    @classmethod
    def of(cls, row: m.Workspace) -> Workspace:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            slug=row.slug,
            created_at=row.created_at,
            _row=row,
        )

    @strawberry.field(description="The caller's role here.")
    async def viewer_role(self, info: Info) -> Role | None:
        principal = await info.context.principal()
        if principal is None:
            return None
        if principal.is_agent:
            return principal.agent_role if principal.workspace_id == self._row.id else None
        assert principal.user_id is not None
        return await loaders().role.load((self._row.id, principal.user_id))

    @strawberry.field(description="Permission keys the caller holds here; the UI hides the rest.")
    async def viewer_permissions(self, info: Info) -> list[str]:
        role = await self.viewer_role(info)
        return sorted(permissions_for(role)) if role else []


@strawberry.type
class Membership:
    id: strawberry.ID
    role: Role
    created_at: datetime
    _row: strawberry.Private[m.Membership]

    @classmethod
    def of(cls, row: m.Membership) -> Membership:
        return cls(
            id=strawberry.ID(str(row.id)), role=row.role, created_at=row.created_at, _row=row
        )

    @strawberry.field
    async def user(self) -> User:
        row = await loaders().user.load(self._row.user_id)
        assert row is not None
        return User.of(row)

    @strawberry.field
    async def workspace(self) -> Workspace:
        row = await loaders().workspace.load(self._row.workspace_id)
        assert row is not None
        return Workspace.of(row)


@strawberry.type
class ApiToken:
    id: strawberry.ID
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: m.ApiToken) -> ApiToken:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            prefix=row.prefix,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )
