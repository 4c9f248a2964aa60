"""Who am I, my workspaces and tokens; sign-in by magic link."""

from __future__ import annotations

import logging

import sqlalchemy as sa
import strawberry

from taskmachine import models as m
from taskmachine.auth.permissions import ALL_KEYS
from taskmachine.domain import access, people, workspaces
from taskmachine.domain.errors import Forbidden, NotFound
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, need_id, principal
from taskmachine.schema.ops.listing import page
from taskmachine.schema.pagination import Connection
from taskmachine.schema.types.enums import Role
from taskmachine.schema.types.people import ApiToken, Membership, User, Workspace

log = logging.getLogger("taskmachine.signin")


@strawberry.type
class CreatedApiToken:
    token: str = strawberry.field(description="Shown once; store it now.")
    api_token: ApiToken


@strawberry.input
class CreateApiTokenInput:
    name: str
    expires_in_days: int | None = None


@strawberry.input
class CreateWorkspaceInput:
    name: str
    slug: str | None = None


@strawberry.input
class AddMemberInput:
    workspace_id: strawberry.ID
    email: str
    role: Role = m.Role.MEMBER


@strawberry.input
class SetMemberRoleInput:
    membership_id: strawberry.ID
    role: Role


def _person(caller_user_id: object) -> None:
    if caller_user_id is None:
        raise Forbidden("only a person can do this")


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in person.")
    async def me(self, info: Info) -> User:
        caller = await principal(info)
        _person(caller.user_id)
        async with db() as session:
            row = await session.get(m.User, caller.user_id)
        if row is None:
            raise NotFound("no such user")
        return User.of(row)

    @strawberry.field(description="Every workspace the caller belongs to.")
    async def workspaces(self, info: Info) -> list[Workspace]:
        caller = await principal(info)
        async with db() as session:
            if caller.is_agent:
                rows = (
                    await session.scalars(
                        sa.select(m.Workspace).where(m.Workspace.id == caller.workspace_id)
                    )
                ).all()
            else:
                rows = (
                    await session.scalars(
                        sa.select(m.Workspace)
                        .join(m.Membership, m.Membership.workspace_id == m.Workspace.id)
                        .where(m.Membership.user_id == caller.user_id)
                        .order_by(m.Workspace.name)
                    )
                ).all()
        return [Workspace.of(r) for r in rows]

    @strawberry.field
    async def workspace(self, info: Info, id: strawberry.ID) -> Workspace:
        caller = await principal(info)
        workspace_id = need_id(id, "id")
        async with db() as session:
            await access.require_member(session, caller, workspace_id)
            row = await session.get(m.Workspace, workspace_id)
        assert row is not None
        return Workspace.of(row)

    @strawberry.field
    async def members(
        self,
        info: Info,
        workspace_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Membership]:
        wid = need_id(workspace_id, "workspaceId")
        query = sa.select(m.Membership).where(m.Membership.workspace_id == wid)
        return await page(
            info, query, m.Membership.id, Membership.of, first=first, after=after, workspace_id=wid
        )

    @strawberry.field(description="The caller's personal API tokens.")
    async def api_tokens(self, info: Info) -> list[ApiToken]:
        caller = await principal(info)
        _person(caller.user_id)
        async with db() as session:
            rows = (
                await session.scalars(
                    sa.select(m.ApiToken)
                    .where(m.ApiToken.user_id == caller.user_id)
                    .order_by(m.ApiToken.id)
                )
            ).all()
        return [ApiToken.of(r) for r in rows]

    @strawberry.field(description="Every permission key a role can hold.")
    def permission_keys(self) -> list[str]:
        return sorted(ALL_KEYS)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Email a one-time sign-in link. Always true, so addresses cannot be probed."
    )
    async def request_magic_link(self, info: Info, email: str) -> bool:
        state = info.context.state
        async with db() as session:
            issued = await people.create_magic_link(
                session, state.hasher, email, state.settings.magic_link_ttl_seconds
            )
        mailer = state.services["mailer"]
        await mailer.send_magic_link(email.strip().lower(), issued.secret)
        return True

    @strawberry.mutation
    async def create_api_token(self, info: Info, input: CreateApiTokenInput) -> CreatedApiToken:
        caller = await principal(info)
        _person(caller.user_id)
        assert caller.user_id is not None
        async with db() as session:
            row, secret = await people.create_api_token(
                session,
                info.context.state.hasher,
                caller.user_id,
                input.name,
                input.expires_in_days,
            )
        return CreatedApiToken(token=secret, api_token=ApiToken.of(row))

    @strawberry.mutation
    async def revoke_api_token(self, info: Info, id: strawberry.ID) -> ApiToken:
        caller = await principal(info)
        _person(caller.user_id)
        assert caller.user_id is not None
        async with db() as session:
            row = await people.revoke_api_token(session, caller.user_id, need_id(id, "id"))
        return ApiToken.of(row)

    @strawberry.mutation
    async def update_profile(self, info: Info, name: str) -> User:
        caller = await principal(info)
        _person(caller.user_id)
        assert caller.user_id is not None
        async with db() as session:
            return User.of(await people.update_profile(session, caller.user_id, name))

    @strawberry.mutation
    async def create_workspace(self, info: Info, input: CreateWorkspaceInput) -> Workspace:
        caller = await principal(info)
        async with db() as session:
            row = await workspaces.create_workspace(session, caller, input.name, input.slug)
        return Workspace.of(row)

    @strawberry.mutation
    async def rename_workspace(self, info: Info, id: strawberry.ID, name: str) -> Workspace:
        caller = await principal(info)
        async with db() as session:
            row = await workspaces.rename_workspace(session, caller, need_id(id, "id"), name)
        return Workspace.of(row)

    @strawberry.mutation
    async def add_member(self, info: Info, input: AddMemberInput) -> Membership:
        caller = await principal(info)
        async with db() as session:
            row = await workspaces.add_member(
                session, caller, need_id(input.workspace_id, "workspaceId"), input.email, input.role
            )
        return Membership.of(row)

    @strawberry.mutation
    async def set_member_role(self, info: Info, input: SetMemberRoleInput) -> Membership:
        caller = await principal(info)
        async with db() as session:
            row = await workspaces.set_member_role(
                session, caller, need_id(input.membership_id, "membershipId"), input.role
            )
        return Membership.of(row)

    @strawberry.mutation(description="Remove a member; returns the id of the removed membership.")
    async def remove_member(self, info: Info, membership_id: strawberry.ID) -> strawberry.ID:
        caller = await principal(info)
        async with db() as session:
            row = await workspaces.remove_member(
                session, caller, need_id(membership_id, "membershipId")
            )
        return strawberry.ID(str(row.id))
