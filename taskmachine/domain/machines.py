"""Connecting machines: browser approval, credentials, runtimes, removal, CLI versions.

Approval never stores a secret at rest: approving creates the machine and its broker user with
a throw-away password; the first poll afterwards mints the tokens and sets a fresh broker
password, hands them over once, and keeps only their hashes.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import sqlalchemy as sa
from packaging.version import InvalidVersion, Version
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth import tokens
from taskmachine.auth.permissions import has_permission
from taskmachine.auth.principal import Principal
from taskmachine.domain import access, validate
from taskmachine.domain.errors import BadInput, Conflict, Forbidden, NotFound, Unauthenticated
from taskmachine.domain.events import emit, machines_topic
from taskmachine.models import (
    ApprovalStatus,
    InboxItem,
    InboxStatus,
    Machine,
    MachineApproval,
    MachineToken,
    MachineWorkspace,
    Membership,
    Role,
    Runtime,
    utcnow,
)
from taskmachine.settings import Settings

USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud safely


class BrokerAccounts(Protocol):
    """The broker side of a machine (taskmachine.dispatcher.broker_admin implements it)."""

    async def create_machine(self, machine_id: str, password: str) -> None: ...

    async def set_password(self, machine_id: str, password: str) -> None: ...

    async def remove_machine(self, machine_id: str) -> None: ...


def _user_code() -> str:
    raw = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


@dataclass(frozen=True)
class ApprovalTicket:
    user_code: str
    poll_token: str
    approval_url: str
    expires_at: datetime


async def request_approval(
    session: AsyncSession,
    hasher: tokens.TokenHasher,
    settings: Settings,
    name: str,
    hostname: str,
    os: str,
    cli_version: str,
) -> ApprovalTicket:
    poll_token = tokens.new_secret(tokens.APPROVAL_POLL_PREFIX)
    approval = MachineApproval(
        poll_token_hash=hasher.hash(poll_token),
        user_code=_user_code(),
        name=validate.text(name, "name", max_length=120),
        hostname=validate.text(hostname, "hostname", max_length=255, required=False),
        os=validate.text(os, "os", max_length=64, required=False),
        cli_version=validate.text(cli_version, "cliVersion", max_length=32, required=False),
        status=ApprovalStatus.PENDING,
        expires_at=utcnow() + timedelta(seconds=settings.machine_approval_ttl_seconds),
    )
    session.add(approval)
    await session.flush()
    url = f"{settings.public_url}/machines/approve?code={approval.user_code}"
    return ApprovalTicket(approval.user_code, poll_token, url, approval.expires_at)


def _expire_if_due(approval: MachineApproval) -> None:
    if approval.status is ApprovalStatus.PENDING and approval.expires_at <= utcnow():
        approval.status = ApprovalStatus.EXPIRED


async def approval_by_code(
    session: AsyncSession, principal: Principal, code: str
) -> MachineApproval:
    if principal.user_id is None:
        raise Unauthenticated("sign in to approve a machine")
    approval = await session.scalar(
        sa.select(MachineApproval).where(MachineApproval.user_code == code.strip().upper())
    )
    if approval is None:
        raise NotFound("no such approval code")
    if approval.machine_id is not None:
        # Once approved, the request belongs to its machine's workspaces: outsiders see nothing.
        roles = [
            await access.role_in(session, principal, w)
            for w in await machine_workspaces(session, approval.machine_id)
        ]
        if all(role is None for role in roles):
            raise NotFound("no such approval code")
    _expire_if_due(approval)
    await session.flush()
    return approval


async def approve(
    session: AsyncSession,
    principal: Principal,
    broker: BrokerAccounts,
    code: str,
    workspace_ids: list[uuid.UUID],
) -> MachineApproval:
    approval = await approval_by_code(session, principal, code)
    if not workspace_ids:
        raise BadInput("approve the machine into at least one workspace", field="workspaceIds")
    for workspace_id in dict.fromkeys(workspace_ids):
        await access.require(session, principal, workspace_id, "machine.manage")
    if approval.status is not ApprovalStatus.PENDING:
        raise Conflict(f"this approval is {approval.status.value}")
    machine = Machine(
        name=approval.name,
        hostname=approval.hostname,
        os=approval.os,
        cli_version=approval.cli_version,
        owner_user_id=principal.user_id,
    )
    session.add(machine)
    await session.flush()
    session.add_all(
        MachineWorkspace(machine_id=machine.id, workspace_id=w)
        for w in dict.fromkeys(workspace_ids)
    )
    approval.status = ApprovalStatus.APPROVED
    approval.machine_id = machine.id
    approval.decided_by_user_id = principal.user_id
    await session.flush()
    # The broker user exists before the approval commits; its password is set on hand-off.
    await broker.create_machine(str(machine.id), secrets.token_urlsafe(32))
    for workspace_id in dict.fromkeys(workspace_ids):
        emit(session, machines_topic(workspace_id), {"machine_id": str(machine.id)})
    return approval


async def deny(session: AsyncSession, principal: Principal, code: str) -> MachineApproval:
    approval = await approval_by_code(session, principal, code)
    if approval.status is not ApprovalStatus.PENDING:
        raise Conflict(f"this approval is {approval.status.value}")
    approval.status = ApprovalStatus.DENIED
    approval.decided_by_user_id = principal.user_id
    await session.flush()
    return approval


@dataclass(frozen=True)
class MachineTokens:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str


@dataclass(frozen=True)
class Credentials:
    machine: Machine
    tokens: MachineTokens
    amqp_url: str
    workspace_ids: list[uuid.UUID]


def machine_amqp_url(settings: Settings, machine_id: uuid.UUID, password: str) -> str:
    base = urlsplit(settings.public_amqp_url or settings.amqp_url)
    host = base.hostname or "127.0.0.1"
    netloc = f"{quote(f'machine-{machine_id}', safe='')}:{quote(password, safe='')}@{host}"
    if base.port:
        netloc += f":{base.port}"
    return urlunsplit((base.scheme, netloc, base.path or "/", "", ""))


async def _issue_tokens(
    session: AsyncSession, hasher: tokens.TokenHasher, settings: Settings, machine_id: uuid.UUID
) -> MachineTokens:
    now = utcnow()
    access = tokens.new_secret(tokens.MACHINE_ACCESS_PREFIX)
    refresh = tokens.new_secret(tokens.MACHINE_REFRESH_PREFIX)
    access_expires = now + timedelta(seconds=settings.machine_access_token_ttl_seconds)
    session.add_all(
        [
            MachineToken(
                machine_id=machine_id,
                kind="access",
                token_hash=hasher.hash(access),
                expires_at=access_expires,
            ),
            MachineToken(
                machine_id=machine_id,
                kind="refresh",
                token_hash=hasher.hash(refresh),
                expires_at=now + timedelta(seconds=settings.machine_refresh_token_ttl_seconds),
            ),
        ]
    )
    await session.flush()
    return MachineTokens(access, access_expires, refresh)


async def poll(
    session: AsyncSession,
    hasher: tokens.TokenHasher,
    settings: Settings,
    broker: BrokerAccounts | None,
    poll_token: str,
) -> tuple[ApprovalStatus, Credentials | None]:
    approval = await session.scalar(
        sa.select(MachineApproval).where(MachineApproval.poll_token_hash == hasher.hash(poll_token))
    )
    if approval is None:
        raise NotFound("no such approval; run tama setup again")
    _expire_if_due(approval)
    await session.flush()
    if approval.status is not ApprovalStatus.APPROVED or approval.machine_id is None:
        return approval.status, None
    # Hand the credentials over exactly once, even if two polls race.
    claimed = await session.scalar(
        sa.update(MachineApproval)
        .where(MachineApproval.id == approval.id, MachineApproval.handoff.is_(None))
        .values(handoff={"delivered_at": utcnow().isoformat()})
        .returning(MachineApproval.id)
    )
    if claimed is None:
        return approval.status, None
    machine = await session.get(Machine, approval.machine_id)
    if machine is None:
        return ApprovalStatus.DENIED, None  # removed before it ever connected
    if broker is None:
        raise Conflict("the server runs without a broker; machines cannot connect")
    password = secrets.token_urlsafe(32)
    await broker.set_password(str(machine.id), password)
    issued = await _issue_tokens(session, hasher, settings, machine.id)
    workspace_ids = list(
        (
            await session.scalars(
                sa.select(MachineWorkspace.workspace_id).where(
                    MachineWorkspace.machine_id == machine.id
                )
            )
        ).all()
    )
    return approval.status, Credentials(
        machine, issued, machine_amqp_url(settings, machine.id, password), workspace_ids
    )


async def refresh(
    session: AsyncSession, hasher: tokens.TokenHasher, settings: Settings, refresh_token: str
) -> MachineTokens:
    """Rotate: the presented refresh token stops working and a new pair is issued."""
    now = utcnow()
    machine_id = await session.scalar(
        sa.update(MachineToken)
        .where(
            MachineToken.token_hash == hasher.hash(refresh_token),
            MachineToken.kind == "refresh",
            MachineToken.revoked_at.is_(None),
            MachineToken.expires_at > now,
        )
        .values(revoked_at=now)
        .returning(MachineToken.machine_id)
    )
    if machine_id is None:
        raise Unauthenticated("the refresh token is invalid or expired; run tama setup again")
    return await _issue_tokens(session, hasher, settings, machine_id)


async def principal_for_machine_token(
    session: AsyncSession, hasher: tokens.TokenHasher, secret: str
) -> Principal | None:
    machine_id = await session.scalar(
        sa.select(MachineToken.machine_id).where(
            MachineToken.token_hash == hasher.hash(secret),
            MachineToken.kind == "access",
            MachineToken.revoked_at.is_(None),
            MachineToken.expires_at > utcnow(),
        )
    )
    return Principal(machine_id=machine_id, via="machine") if machine_id else None


async def machine_workspaces(session: AsyncSession, machine_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        (
            await session.scalars(
                sa.select(MachineWorkspace.workspace_id).where(
                    MachineWorkspace.machine_id == machine_id
                )
            )
        ).all()
    )


async def manageable_machine(
    session: AsyncSession, principal: Principal, machine_id: uuid.UUID, key: str
) -> Machine:
    """The machine, if the caller holds `key` in at least one of its workspaces."""
    machine = await session.get(Machine, machine_id)
    if machine is None:
        raise NotFound("no such machine")
    roles = [
        await access.role_in(session, principal, w)
        for w in await machine_workspaces(session, machine_id)
    ]
    held = [r for r in roles if r is not None]
    if not held:
        raise NotFound("no such machine")
    if not any(has_permission(r, key) for r in held):
        raise Forbidden(f"your role lacks the permission {key}")
    return machine


async def set_runtime_enabled(
    session: AsyncSession, principal: Principal, runtime_id: uuid.UUID, enabled: bool
) -> Runtime:
    runtime = await session.get(Runtime, runtime_id)
    if runtime is None:
        raise NotFound("no such runtime")
    await manageable_machine(session, principal, runtime.machine_id, "runtime.manage")
    if runtime.enabled != enabled:
        runtime.enabled = enabled
        await session.flush()
        for workspace_id in await machine_workspaces(session, runtime.machine_id):
            emit(session, machines_topic(workspace_id), {"machine_id": str(runtime.machine_id)})
    return runtime


async def remove(
    session: AsyncSession,
    principal: Principal,
    broker: BrokerAccounts | None,
    machine_id: uuid.UUID,
) -> Machine:
    """Cut the machine off the broker first (its connection closes), then forget it."""
    machine = await manageable_machine(session, principal, machine_id, "machine.manage")
    workspace_ids = await machine_workspaces(session, machine_id)
    if broker is not None:
        await broker.remove_machine(str(machine_id))
    await session.execute(
        sa.update(MachineToken)
        .where(MachineToken.machine_id == machine_id, MachineToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await session.execute(
        sa.update(InboxItem)
        .where(InboxItem.machine_id == machine_id, InboxItem.status == InboxStatus.OPEN)
        .values(status=InboxStatus.RESOLVED, resolved_at=utcnow())
    )
    await session.execute(
        sa.update(InboxItem).where(InboxItem.machine_id == machine_id).values(machine_id=None)
    )
    await session.delete(machine)
    await session.flush()
    for workspace_id in workspace_ids:
        emit(session, machines_topic(workspace_id), {"machine_id": str(machine_id)})
    return machine


def parse_version(value: str) -> Version | None:
    try:
        return Version(value)
    except InvalidVersion:
        return None


def update_status(machine: Machine, settings: Settings) -> str:
    """CURRENT, OUTDATED, UNSUPPORTED (below the minimum: no new work), QUEUED, UPDATING, FAILED."""
    reported = (machine.update_status or "").lower()
    if reported.startswith("updating"):
        return "UPDATING"
    if reported.startswith("failed"):
        return "FAILED"
    version = parse_version(machine.cli_version)
    latest = parse_version(settings.latest_cli_version) if settings.latest_cli_version else None
    minimum = parse_version(settings.min_cli_version)
    behind = version is not None and latest is not None and version < latest
    if machine.update_requested_at is not None and behind:
        return "QUEUED"
    if version is not None and minimum is not None and version < minimum:
        return "UNSUPPORTED"
    return "OUTDATED" if behind else "CURRENT"


def may_take_work(machine: Machine, settings: Settings) -> bool:
    version = parse_version(machine.cli_version)
    minimum = parse_version(settings.min_cli_version)
    return version is not None and (minimum is None or version >= minimum)


async def managers(session: AsyncSession, workspace_id: uuid.UUID, key: str) -> list[uuid.UUID]:
    """People whose role in the workspace holds `key` (e.g. agent.manage)."""
    roles = [r for r in Role if has_permission(r, key)]
    return list(
        (
            await session.scalars(
                sa.select(Membership.user_id).where(
                    Membership.workspace_id == workspace_id, Membership.role.in_(roles)
                )
            )
        ).all()
    )
