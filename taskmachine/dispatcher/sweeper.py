"""Periodic checks that need no trigger: machines gone quiet, stale runtimes, outdated daemons.

Each check is idempotent and raises at most one inbox item per subject (dedupe keys), so a
machine that stays down for a day makes one item, not one per sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.background import stop_task
from taskmachine.db import SessionFactory
from taskmachine.domain import machines as machine_domain
from taskmachine.domain import runs as run_domain
from taskmachine.domain.events import emit, inbox_topic, machines_topic
from taskmachine.models import (
    Agent,
    InboxItem,
    InboxKind,
    InboxStatus,
    Machine,
    MachineStatus,
    MachineWorkspace,
    Run,
    RunStatus,
    Runtime,
    utcnow,
)
from taskmachine.settings import Settings

log = logging.getLogger("taskmachine.sweeper")


async def mark_quiet_machines(
    session: AsyncSession, now: datetime, window: float
) -> list[uuid.UUID]:
    """A machine whose heartbeats stopped is offline; its last status cannot say so itself."""
    quiet = list(
        (
            await session.scalars(
                sa.update(Machine)
                .where(
                    Machine.status == MachineStatus.ONLINE,
                    Machine.last_heartbeat_at < now - timedelta(seconds=window),
                )
                .values(status=MachineStatus.OFFLINE)
                .returning(Machine.id)
            )
        ).all()
    )
    if quiet:
        links = (
            await session.execute(
                sa.select(MachineWorkspace.workspace_id, MachineWorkspace.machine_id).where(
                    MachineWorkspace.machine_id.in_(quiet)
                )
            )
        ).all()
        for workspace_id, machine_id in links:
            emit(session, machines_topic(workspace_id), {"machine_id": str(machine_id)})
    return quiet


def _ready(runtime: Runtime, machine: Machine, now: datetime, window: float) -> bool:
    fresh = machine.last_heartbeat_at is not None and machine.last_heartbeat_at >= now - timedelta(
        seconds=window
    )
    return (
        fresh and machine.status is MachineStatus.ONLINE and runtime.available and runtime.enabled
    )


async def notify_stale_runtimes(session: AsyncSession, now: datetime, window: float) -> int:
    """One inbox item per stale runtime that agents depend on, to the people who manage agents."""
    rows = (
        await session.execute(
            sa.select(Runtime, Machine, Agent.workspace_id, Agent.name)
            .join(Machine, Machine.id == Runtime.machine_id)
            .join(Agent, Agent.default_runtime_id == Runtime.id)
            .where(Agent.archived_at.is_(None))
        )
    ).all()
    by_runtime: dict[uuid.UUID, tuple[Runtime, Machine, dict[uuid.UUID, list[str]]]] = {}
    for runtime, machine, workspace_id, agent_name in rows:
        entry = by_runtime.setdefault(runtime.id, (runtime, machine, {}))
        entry[2].setdefault(workspace_id, []).append(agent_name)
    raised = 0
    for runtime, machine, workspaces in by_runtime.values():
        key = f"runtime_stale:{runtime.id}"
        if _ready(runtime, machine, now, window):
            if runtime.stale_notified_at is not None:
                runtime.stale_notified_at = None
                await session.execute(
                    sa.update(InboxItem)
                    .where(InboxItem.dedupe_key == key, InboxItem.status == InboxStatus.OPEN)
                    .values(status=InboxStatus.RESOLVED, resolved_at=now, dedupe_key=None)
                )
            continue
        if runtime.stale_notified_at is not None:
            continue
        runtime.stale_notified_at = now
        for workspace_id, agent_names in workspaces.items():
            for user_id in await machine_domain.managers(session, workspace_id, "agent.manage"):
                session.add(
                    InboxItem(
                        workspace_id=workspace_id,
                        user_id=user_id,
                        kind=InboxKind.RUNTIME_STALE,
                        title=f"{runtime.name} on {machine.name} is not ready",
                        body=(
                            f"Agents that run on it ({', '.join(sorted(agent_names))}) cannot "
                            "start new work until the machine checks in again and the runtime "
                            "is enabled."
                        ),
                        machine_id=machine.id,
                        data={"runtimeId": str(runtime.id), "machineId": str(machine.id)},
                        dedupe_key=key,
                    )
                )
                emit(session, inbox_topic(user_id), {"kind": "runtime_stale"})
                raised += 1
    await session.flush()
    return raised


async def nudge_outdated(session: AsyncSession, settings: Settings) -> int:
    """One "Update now" item per machine and latest version, to the people who manage machines."""
    if not settings.latest_cli_version:
        return 0
    latest = machine_domain.parse_version(settings.latest_cli_version)
    raised = 0
    machines = (await session.scalars(sa.select(Machine))).all()
    for machine in machines:
        version = machine_domain.parse_version(machine.cli_version)
        if version is None or latest is None or version >= latest:
            continue
        key = f"update:{machine.id}:{settings.latest_cli_version}"
        for workspace_id in await machine_domain.machine_workspaces(session, machine.id):
            for user_id in await machine_domain.managers(session, workspace_id, "machine.manage"):
                exists = await session.scalar(
                    sa.select(InboxItem.id).where(
                        InboxItem.user_id == user_id, InboxItem.dedupe_key == key
                    )
                )
                if exists is not None:
                    continue
                session.add(
                    InboxItem(
                        workspace_id=workspace_id,
                        user_id=user_id,
                        kind=InboxKind.UPDATE_NUDGE,
                        title=f"{machine.name} runs tama {machine.cli_version}; {latest} is out",
                        body="Update now queues the update; the daemon installs it and restarts.",
                        machine_id=machine.id,
                        data={
                            "action": "update_machine",
                            "machineId": str(machine.id),
                            "targetVersion": settings.latest_cli_version,
                        },
                        dedupe_key=key,
                    )
                )
                emit(session, inbox_topic(user_id), {"kind": "update_nudge"})
                raised += 1
    await session.flush()
    return raised


async def expire_claims(session: AsyncSession, now: datetime, deadline: float) -> int:
    """Dispatched but never claimed: the machine is gone (a server-side deadline; the broker
    cannot expire messages stuck behind others in a priority queue)."""
    late = (
        await session.scalars(
            sa.select(Run).where(
                Run.status == RunStatus.DISPATCHED,
                Run.dispatched_at < now - timedelta(seconds=deadline),
            )
        )
    ).all()
    for run in late:
        await run_domain.fail_unclaimed(session, run)
    return len(late)


async def expire_leases(session: AsyncSession, now: datetime, hard_limit: float) -> int:
    """No heartbeat renewed the lease: one retry from a clean worktree, then `lease_lost`.
    A run far past its hard limit with no report is failed `timeout` (the daemon should have)."""
    lost = (
        await session.scalars(
            sa.select(Run).where(
                Run.status.in_((RunStatus.CLAIMED, RunStatus.RUNNING)),
                Run.lease_expires_at < now,
            )
        )
    ).all()
    for run in lost:
        await run_domain.retry_or_fail(
            session,
            run,
            "lease_lost",
            "the machine stopped renewing the run's lease",
            clean_worktree=True,
        )
    overdue = (
        await session.scalars(
            sa.select(Run).where(
                Run.status == RunStatus.RUNNING,
                Run.started_at < now - timedelta(seconds=hard_limit + 60),
            )
        )
    ).all()
    for run in overdue:
        await run_domain.finished(session, run, "timeout", error="over the hard time limit")
    return len(lost) + len(overdue)


class Sweeper:
    """Runs the checks every `sweep_interval_seconds`.

    Time this server was not running does not count against machines: while it was down their
    claims could not reach it and their heartbeats waited in the broker. So after `start` no
    run is failed unclaimed before a claim deadline has passed, and no lease is declared lost
    before a lease period has passed (else a restart longer than the lease retried every run).
    """

    def __init__(self, settings: Settings, session_factory: SessionFactory) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self._task: asyncio.Task[None] | None = None
        self._started: float | None = None

    def _up_for(self) -> float:
        return float("inf") if self._started is None else time.monotonic() - self._started

    async def sweep_once(self) -> None:
        window = self.settings.machine_online_window_seconds
        up_for = self._up_for()
        async with self.session_factory() as session:
            now = utcnow()
            await mark_quiet_machines(session, now, window)
            if up_for >= self.settings.claim_deadline_seconds:
                await expire_claims(session, now, self.settings.claim_deadline_seconds)
            if up_for >= self.settings.lease_seconds:
                await expire_leases(session, now, self.settings.run_hard_timeout_seconds)
            await notify_stale_runtimes(session, now, window)
            await nudge_outdated(session, self.settings)
            await session.commit()

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:  # one failed sweep must not end the sweeps
                log.exception("sweep failed")
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    async def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._loop(), name="sweeper")

    async def stop(self) -> None:
        await stop_task(self._task)
