"""Write a batch of heartbeats in one transaction with a fixed number of statements.

A burst of thousands of heartbeats becomes a handful of bulk statements, so ingest does not
starve the API of the database. The server's clock stamps `last_heartbeat_at` (a machine's clock
may be wrong); a runtime no longer reported drops off; new runtimes start disabled.

Most heartbeats carry only the digest of their runtime list (see `Heartbeat.runtimes`): when it
is the digest stored with the machine, the runtime rows stand as they are; when it is not (the
list it stands for never got here), they stand too, until the daemon's next full list, which it
sends at least once a minute.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.domain.events import emit, machines_topic
from taskmachine.models import Machine, MachineStatus, MachineWorkspace, Run, RunStatus, Runtime
from taskmachine.wire.messages import Heartbeat, RuntimeReport

log = logging.getLogger("taskmachine.ingest")

# The columns a heartbeat reports, as read back to compare with it.
_MACHINE_FIELDS = (
    Machine.cli_version,
    Machine.execution_root,
    Machine.capacity,
    Machine.active_runs,
    Machine.update_status,
    Machine.runtimes_digest,
)
_RUNTIME_FIELDS = (
    Runtime.provider,
    Runtime.path,
    Runtime.version,
    Runtime.capabilities,
    Runtime.available,
)


def latest_per_machine(heartbeats: Iterable[Heartbeat]) -> dict[uuid.UUID, Heartbeat]:
    """The newest heartbeat of each machine; one that only names its runtimes' digest takes the
    list from an older heartbeat of the same batch that carried it (else it would be lost)."""
    latest: dict[uuid.UUID, Heartbeat] = {}
    lists: dict[uuid.UUID, Heartbeat] = {}
    for beat in heartbeats:
        seen = latest.get(beat.machine_id)
        if seen is None or (beat.sent_at, beat.seq) >= (seen.sent_at, seen.seq):
            latest[beat.machine_id] = beat
        if beat.runtimes is not None:
            listed = lists.get(beat.machine_id)
            if listed is None or (beat.sent_at, beat.seq) >= (listed.sent_at, listed.seq):
                lists[beat.machine_id] = beat
    for machine_id, listed in lists.items():
        beat = latest[machine_id]
        if beat.runtimes is None and beat.runtimes_digest == listed.runtimes_digest:
            latest[machine_id] = beat.model_copy(update={"runtimes": listed.runtimes})
    return latest


def _capabilities(report: RuntimeReport) -> dict[str, Any]:
    # One serializer call per report (not one per model): this runs for every runtime of every
    # heartbeat, and it was the largest single cost of a batch.
    return report.model_dump(include={"models", "reason"})


def _runtime_fields(report: RuntimeReport, now: datetime) -> dict[str, Any]:
    return {
        "provider": report.provider,
        "path": report.path or "",
        "version": report.version or "",
        "capabilities": _capabilities(report),
        "available": report.available,
        "last_reported_at": now,
    }


async def apply_heartbeats(
    session: AsyncSession,
    heartbeats: Iterable[Heartbeat],
    now: datetime,
    online_window: float,
    lease: float = 45.0,
) -> set[uuid.UUID]:
    """Apply the newest heartbeat of each known machine; returns the machines that changed
    in a way a person would see (came online, new version, runtimes changed)."""
    # In id order, so that every batch (and every server) updates rows in the same order: two
    # writers then wait for each other instead of deadlocking.
    latest = dict(sorted(latest_per_machine(heartbeats).items()))
    if not latest:
        return set()
    # Plain rows, not ORM objects: a batch reads hundreds of machines only to compare them.
    machines = {
        row.id: row
        for row in (
            await session.execute(
                sa.select(
                    Machine.id, Machine.status, Machine.last_heartbeat_at, *_MACHINE_FIELDS
                ).where(Machine.id.in_(latest))
            )
        ).all()
    }
    stale_before = now - timedelta(seconds=online_window)
    changed: set[uuid.UUID] = set()
    machine_rows: list[dict[str, Any]] = []
    # Machines whose reported fields are all as stored: one UPDATE for all of them.
    same: list[uuid.UUID] = []
    for machine_id, beat in latest.items():
        machine = machines.get(machine_id)
        if machine is None:
            continue  # removed: its last heartbeats may still be in flight
        was_online = (
            machine.status is MachineStatus.ONLINE
            and machine.last_heartbeat_at is not None
            and machine.last_heartbeat_at >= stale_before
        )
        fields: dict[str, Any] = {
            "cli_version": beat.cli_version,
            "execution_root": beat.execution_root,
            "capacity": beat.capacity,
            "active_runs": len(beat.active_runs),
            "update_status": beat.update_status,
        }
        if beat.runtimes is not None:
            fields["runtimes_digest"] = beat.runtimes_digest
        elif beat.runtimes_digest != machine.runtimes_digest:
            # Not the list stored: the rows stand until the daemon sends its list again.
            log.info(
                "heartbeat names a runtime list this server does not have",
                extra={"machine_id": str(machine_id)},
            )
        differs = {k for k, v in fields.items() if getattr(machine, k) != v}
        if not was_online or differs - {"active_runs", "runtimes_digest"}:
            changed.add(machine_id)
        if differs:
            machine_rows.append(
                {
                    "id": machine_id,
                    "status": MachineStatus.ONLINE,
                    "last_heartbeat_at": now,
                    **fields,
                }
            )
        else:
            same.append(machine_id)
    if not machine_rows and not same:
        return set()
    if machine_rows:
        await session.execute(sa.update(Machine), machine_rows)
    if same:
        await session.execute(
            sa.update(Machine)
            .where(Machine.id.in_(same))
            .values(status=MachineStatus.ONLINE, last_heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
    applied = {machine_id: beat for machine_id, beat in latest.items() if machine_id in machines}
    # A list is compared with the rows only when its digest is not the one stored (or there is
    # none: an older daemon). The usual beat touches no runtime row at all, so `last_reported_at`
    # is when the list was last written, not the last heartbeat (that is the machine's).
    listed = {
        m: beat
        for m, beat in applied.items()
        if beat.runtimes is not None
        and (beat.runtimes_digest is None or beat.runtimes_digest != machines[m].runtimes_digest)
    }
    if listed:
        changed |= await _apply_runtimes(session, listed, now)
    await _renew_leases(session, applied, now, lease)
    if changed:
        links = (
            await session.execute(
                sa.select(MachineWorkspace.machine_id, MachineWorkspace.workspace_id).where(
                    MachineWorkspace.machine_id.in_(changed)
                )
            )
        ).all()
        for machine_id, workspace_id in links:
            emit(session, machines_topic(workspace_id), {"machine_id": str(machine_id)})
    return changed


async def _apply_runtimes(
    session: AsyncSession, beats: dict[uuid.UUID, Heartbeat], now: datetime
) -> set[uuid.UUID]:
    existing = {
        (row.machine_id, row.name): row
        for row in (
            await session.execute(
                sa.select(Runtime.id, Runtime.machine_id, Runtime.name, *_RUNTIME_FIELDS).where(
                    Runtime.machine_id.in_(beats)
                )
            )
        ).all()
    }
    changed: set[uuid.UUID] = set()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    # Runtimes reported exactly as stored (the usual case) only get a new last_reported_at.
    same: list[uuid.UUID] = []
    reported: set[tuple[uuid.UUID, str]] = set()
    for machine_id, beat in beats.items():
        for report in beat.runtimes or ():
            key = (machine_id, report.name)
            if key in reported:
                continue  # a tool named twice: the first report wins
            reported.add(key)
            fields = _runtime_fields(report, now)
            current = existing.get(key)
            if current is None:
                inserts.append(
                    {"machine_id": machine_id, "name": report.name, "enabled": False, **fields}
                )
                changed.add(machine_id)
                continue
            if any(getattr(current, k) != v for k, v in fields.items() if k != "last_reported_at"):
                changed.add(machine_id)
                updates.append({"id": current.id, **fields})
            else:
                same.append(current.id)
    gone = [r.id for key, r in existing.items() if key not in reported]
    changed |= {r.machine_id for key, r in existing.items() if key not in reported}
    if inserts:
        await session.execute(sa.insert(Runtime), inserts)
    if updates:
        await session.execute(sa.update(Runtime), updates)
    if same:
        await session.execute(
            sa.update(Runtime)
            .where(Runtime.id.in_(same))
            .values(last_reported_at=now)
            .execution_options(synchronize_session=False)
        )
    if gone:
        await session.execute(sa.delete(Runtime).where(Runtime.id.in_(gone)))
    return changed


async def _renew_leases(
    session: AsyncSession, beats: dict[uuid.UUID, Heartbeat], now: datetime, lease: float
) -> None:
    """A heartbeat that lists a run renews its lease (only the attempt, only its own machine)."""
    held = [
        (active.run_id, active.attempt, machine_id)
        for machine_id, beat in beats.items()
        for active in beat.active_runs
    ]
    if not held:
        return
    await session.execute(
        sa.update(Run)
        .where(
            sa.tuple_(Run.id, Run.attempt, Run.machine_id).in_(held),
            Run.status.in_((RunStatus.CLAIMED, RunStatus.RUNNING)),
        )
        .values(lease_expires_at=now + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )
