"""Machines and the runtimes they report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import strawberry
from strawberry.scalars import JSON

from taskmachine import models as m
from taskmachine.domain.machines import update_status as computed_update_status
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import loaders


def machine_online(row: m.Machine, info: Info) -> bool:
    """Online only while it says so and its last heartbeat is fresh (30 s by default)."""
    if row.status is not m.MachineStatus.ONLINE or row.last_heartbeat_at is None:
        return False
    window = timedelta(seconds=info.context.state.settings.machine_online_window_seconds)
    return m.utcnow() - row.last_heartbeat_at < window


@strawberry.type
class Runtime:
    id: strawberry.ID
    name: str
    provider: str
    path: str
    version: str
    capabilities: JSON
    available: bool
    enabled: bool
    last_reported_at: datetime | None
    _row: strawberry.Private[m.Runtime]
    # Its machine's row, when whoever made this had it at hand (a fleet page).
    _machine: strawberry.Private[m.Machine | None] = None

    @classmethod
    def of(cls, row: m.Runtime, machine: m.Machine | None = None) -> Runtime:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            provider=row.provider,
            path=row.path,
            version=row.version,
            capabilities=cast(JSON, row.capabilities),
            available=row.available,
            enabled=row.enabled,
            last_reported_at=row.last_reported_at,
            _row=row,
            _machine=machine,
        )

    @strawberry.field
    async def machine(self) -> Machine:
        row = await loaders().machine.load(self._row.machine_id)
        assert row is not None
        return Machine.of(row)

    @strawberry.field(description="Machine online, reported in its latest heartbeat, enabled.")
    def ready(self, info: Info) -> bool:
        # Answered at once when the machine came along (a fleet page: an awaited resolver per
        # runtime cost a task each, a sixth of the page); otherwise the machine comes from its
        # loader, and GraphQL awaits the coroutine returned here.
        if self._machine is not None:
            return self._ready_on(self._machine, info)
        return self._ready_later(info)  # type: ignore[return-value]

    async def _ready_later(self, info: Info) -> bool:
        machine = await loaders().machine.load(self._row.machine_id)
        return machine is not None and self._ready_on(machine, info)

    def _ready_on(self, machine: m.Machine, info: Info) -> bool:
        if not machine_online(machine, info):
            return False
        # A runtime row exists only while the latest heartbeat reports it (ingest deletes the
        # rest), so an online machine's runtime is "in the latest heartbeat" by construction.
        # Comparing timestamps instead would race with a heartbeat committing between reads.
        return self._row.available and self._row.enabled


@strawberry.type
class Machine:
    id: strawberry.ID
    name: str
    hostname: str
    os: str
    cli_version: str
    last_heartbeat_at: datetime | None
    execution_root: str
    capacity: int
    active_runs: int
    created_at: datetime
    _row: strawberry.Private[m.Machine]

    @classmethod
    def of(cls, row: m.Machine) -> Machine:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            hostname=row.hostname,
            os=row.os,
            cli_version=row.cli_version,
            last_heartbeat_at=row.last_heartbeat_at,
            execution_root=row.execution_root,
            capacity=row.capacity,
            active_runs=row.active_runs,
            created_at=row.created_at,
            _row=row,
        )

    @strawberry.field
    def online(self, info: Info) -> bool:
        return machine_online(self._row, info)

    @strawberry.field(
        description="CURRENT, OUTDATED, UNSUPPORTED (below the minimum: no new work), QUEUED, "
        "UPDATING or FAILED."
    )
    def update_status(self, info: Info) -> str:
        return computed_update_status(self._row, info.context.state.settings)

    @strawberry.field(description="What the daemon last said about its update, if anything.")
    def update_detail(self) -> str | None:
        return self._row.update_status

    @strawberry.field
    def latest_cli_version(self, info: Info) -> str | None:
        return info.context.state.settings.latest_cli_version or None

    @strawberry.field
    def min_cli_version(self, info: Info) -> str:
        return info.context.state.settings.min_cli_version

    @strawberry.field(description="Ids of the workspaces this machine serves that the caller sees.")
    async def workspace_ids(self, info: Info) -> list[strawberry.ID]:
        ids = await loaders().workspace_ids_by_machine.load(self._row.id)
        caller = await info.context.principal()
        # A machine shared with other workspaces must not disclose them to this one's members.
        if caller is None:
            ids = []
        elif caller.user_id is not None:
            roles = await loaders().role.load_many([(i, caller.user_id) for i in ids])
            ids = [i for i, role in zip(ids, roles, strict=True) if role is not None]
        elif caller.machine_id != self._row.id:
            ids = [i for i in ids if i == caller.workspace_id]
        return [strawberry.ID(str(i)) for i in ids]

    @strawberry.field
    async def runtimes(self) -> list[Runtime]:
        rows = await loaders().runtimes_by_machine.load(self._row.id)
        # Each runtime's `ready` needs its machine: this one, already read.
        return [Runtime.of(r, self._row) for r in sorted(rows, key=lambda r: r.name)]
