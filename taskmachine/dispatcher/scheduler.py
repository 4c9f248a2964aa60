"""Capacity and order: which queued run goes to a machine next, and why the others wait.

A queued run goes when its agent is under its concurrency limit, its task (or chat) has no other
active run, its runtime is ready (machine online, runtime reported, enabled, daemon not below the
minimum version) and its machine has a free slot. Among those, higher effective priority first,
then age; a waiting run gains one level per five minutes (taskmachine.domain.runs), so the lowest
priority reaches the top within 45 minutes. Dispatch marks the run and records its job in the
outbox in one transaction; right after the commit the scheduler hands the jobs to the relay,
which publishes them (and, should that fail, retries from the outbox).

A dispatch is a conditional update (queued → dispatched), so two schedulers never send one run
twice. Whoever decides dispatches holds DISPATCH_LOCK on PostgreSQL until its commit (SQLite's
one writer serializes anyway), so two deciders never count the same free slot.

The request that queues a run may also dispatch it itself, before its commit (`dispatch_queued`),
when nothing else waits for that agent, machine or subject and the run could go at once: that
saves a transaction, a wake-up and a pass. Its jobs are published right after that commit, as a
pass's are; the relay's loop is still the backstop. Otherwise the run waits for a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from taskmachine.background import stop_task
from taskmachine.db import SessionFactory, on_postgresql
from taskmachine.dispatcher.relay import Relay
from taskmachine.domain import machines as machine_domain
from taskmachine.domain import runs as run_domain
from taskmachine.domain.events import KICK_KEY, emit, run_topic
from taskmachine.live import LiveHub
from taskmachine.models import (
    Agent,
    Machine,
    MachineStatus,
    OutboxMessage,
    Run,
    RunStatus,
    Runtime,
    utcnow,
)
from taskmachine.settings import Settings
from taskmachine.wire import topology
from taskmachine.wire.runs import RunJob, RunLimits

log = logging.getLogger("taskmachine.scheduler")

BATCH = 1000
# A PostgreSQL advisory lock ("tamadisp"), held by a pass or an inline dispatch until it commits.
DISPATCH_LOCK = 0x74616D6164697370
# Jobs an inline dispatch recorded, published once the request's transaction commits.
DISPATCHED_KEY = "taskmachine.dispatched"
NO_RUNTIME = "the agent has no runtime"


def runtime_blocker(
    runtime: Runtime | None, machine: Machine | None, settings: Settings, now: datetime
) -> str | None:
    """Why a runtime cannot take new work, or None when it is ready."""
    if runtime is None or machine is None:
        return NO_RUNTIME
    fresh = machine.last_heartbeat_at is not None and machine.last_heartbeat_at >= now - timedelta(
        seconds=settings.machine_online_window_seconds
    )
    if machine.status is not MachineStatus.ONLINE or not fresh:
        return f"runtime offline ({machine.name} is not checking in)"
    # (A runtime no longer reported has no row: ingest deletes it.)
    if not runtime.available:
        return f"{runtime.name} on {machine.name} does not run"
    if not runtime.enabled:
        return f"{runtime.name} on {machine.name} is not enabled for agents"
    if not machine_domain.may_take_work(machine, settings):
        return f"{machine.name} needs a tama update"
    return None


def render_job(run: Run, settings: Settings, runtime: Runtime, agent: Agent) -> RunJob:
    subject = run.task_id or run.chat_id
    assert subject is not None
    return RunJob(
        run_id=run.id,
        attempt=run.attempt,
        workspace_id=run.workspace_id,
        subject_id=subject,
        subject_kind="task" if run.task_id else "chat",
        runtime=runtime.name,
        model=agent.model,
        reasoning_level=agent.reasoning_level,
        prompt=run.compiled_prompt or run.input or "(no instructions)",
        resume_session_id=run.resume_session_id,
        permission="full_auto" if run.permission == "full_auto" else "safe",
        run_token="-",  # the relay puts the derived token in at publish time; never stored
        api_url=settings.public_url,
        skills=[],
        limits=RunLimits(
            hard_timeout_seconds=settings.run_hard_timeout_seconds,
            idle_timeout_seconds=settings.run_idle_timeout_seconds,
            cancel_grace_seconds=settings.cancel_grace_seconds,
        ),
        clean_worktree=run.clean_worktree,
        dispatched_at=utcnow(),
    )


JobRenderer = Callable[[Run, Settings, Runtime, Agent], RunJob]


Dispatched = list[tuple[OutboxMessage, Run]]


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A queued run as a pass sees it: what the decision reads. A pass may see a thousand of
    them; ORM objects for each (and the unit of work walking them at the commit) cost more than
    the rest of the pass."""

    id: uuid.UUID
    agent_id: uuid.UUID
    runtime_id: uuid.UUID | None
    task_id: uuid.UUID | None
    chat_id: uuid.UUID | None
    priority: int
    created_at: datetime
    queue_reason: str | None
    queue_position: int | None


_WAITING = sa.select(  # in _Waiting's order
    Run.id,
    Run.agent_id,
    Run.runtime_id,
    Run.task_id,
    Run.chat_id,
    Run.priority,
    Run.created_at,
    Run.queue_reason,
    Run.queue_position,
)
_RUNS = cast(sa.Table, Run.__table__)
# A waiting run's new reason and place in line, written once a pass for all the runs that moved:
# SQLite takes them as one executemany (each row a B-tree lookup in-process); PostgreSQL as one
# UPDATE joined to the arrays (an executemany there costs ~60 µs a row, 50 ms for 850 rows).
_SET_PLACE = (
    sa.update(_RUNS)
    .where(_RUNS.c.id == sa.bindparam("run"), _RUNS.c.status == RunStatus.QUEUED)
    .values(queue_reason=sa.bindparam("reason"), queue_position=sa.bindparam("position"))
)
_SET_PLACES_PG = sa.text(
    "UPDATE runs SET queue_reason = v.reason, queue_position = v.position"
    " FROM unnest(CAST(:runs AS uuid[]), CAST(:reasons AS varchar[]),"
    " CAST(:positions AS integer[])) AS v(id, reason, position)"
    " WHERE runs.id = v.id AND runs.status = :queued"
)


async def _set_places(session: AsyncSession, places: list[tuple[uuid.UUID, str, int]]) -> None:
    if on_postgresql(session):
        runs, reasons, positions = zip(*places, strict=True)
        await session.execute(
            _SET_PLACES_PG,
            {
                "runs": list(runs),
                "reasons": list(reasons),
                "positions": list(positions),
                "queued": RunStatus.QUEUED.value,
            },
        )
        return
    await session.execute(
        _SET_PLACE, [{"run": run, "reason": reason, "position": pos} for run, reason, pos in places]
    )


async def schedule_once(
    session: AsyncSession, settings: Settings, render: JobRenderer = render_job
) -> Dispatched:
    """One pass; returns the jobs it recorded (published once the caller has committed)."""
    now = utcnow()
    await lock_dispatch(session, wait=True)
    waiting = [
        _Waiting(*row)
        for row in await session.execute(
            _WAITING.where(Run.status == RunStatus.QUEUED).order_by(Run.id).limit(BATCH)
        )
    ]
    if not waiting:
        return []
    agents = {
        agent.id: agent
        for agent in await session.scalars(
            sa.select(Agent).where(Agent.id.in_({run.agent_id for run in waiting}))
        )
    }
    runtime_ids = {run.runtime_id for run in waiting if run.runtime_id is not None}
    placed = (
        await session.execute(
            sa.select(Runtime, Machine)
            .join(Machine, Machine.id == Runtime.machine_id)
            .where(Runtime.id.in_(runtime_ids))
        )
    ).all()
    runtimes = {runtime.id: runtime for runtime, _ in placed}
    machines = {machine.id: machine for _, machine in placed}
    # Once per runtime, not per run (it parses the daemon's version).
    blockers = {
        runtime.id: runtime_blocker(runtime, machines[runtime.machine_id], settings, now)
        for runtime in runtimes.values()
    }
    on_machine = (
        await session.execute(
            sa.select(Run.agent_id, Run.task_id, Run.chat_id, Run.machine_id).where(
                Run.status.in_(run_domain.ON_MACHINE)
            )
        )
    ).all()
    agent_load = Counter(row.agent_id for row in on_machine)
    machine_load = Counter(row.machine_id for row in on_machine)
    busy_subjects = {row.task_id for row in on_machine if row.task_id} | {
        row.chat_id for row in on_machine if row.chat_id
    }
    order = sorted(waiting, key=lambda r: (-run_domain.effective_priority(r, now), r.id))
    chosen: list[tuple[uuid.UUID, Agent, Runtime, Machine]] = []
    places: list[tuple[uuid.UUID, str, int]] = []
    position = 0
    for run in order:
        agent = agents.get(run.agent_id)
        runtime = runtimes.get(run.runtime_id) if run.runtime_id else None
        machine = machines[runtime.machine_id] if runtime else None
        subject = run.task_id or run.chat_id
        reason = why_waits(
            agent,
            machine,
            runtime_blocked=blockers[runtime.id] if runtime else NO_RUNTIME,
            is_task=run.task_id is not None,
            subject_busy=subject in busy_subjects,
            agent_load=agent_load[agent.id] if agent else 0,
            machine_load=machine_load[machine.id] if machine else 0,
        )
        if reason is None:
            assert agent is not None and runtime is not None and machine is not None
            chosen.append((run.id, agent, runtime, machine))
            agent_load[agent.id] += 1
            machine_load[machine.id] += 1
            if subject is not None:
                busy_subjects.add(subject)
            continue
        position += 1
        # Waiting behind a run of the same task is where its follow-up belongs.
        if subject is not None:
            busy_subjects.add(subject)
        if run.queue_reason != reason or run.queue_position != position:
            places.append((run.id, reason, position))
            emit(
                session,
                run_topic(run.id),
                {"kind": "queue", "reason": reason, "position": position},
            )
    if places:
        # Each dispatch moves every run behind it up one place: under a deep queue that is
        # hundreds of rows a pass, written here in one statement.
        await _set_places(session, places)
    return await _dispatch(session, chosen, settings, render)


async def _dispatch(
    session: AsyncSession,
    chosen: list[tuple[uuid.UUID, Agent, Runtime, Machine]],
    settings: Settings,
    render: JobRenderer,
) -> Dispatched:
    """Take the chosen runs that are still queued (one conditional update: a run cancelled
    meanwhile stays out) and record their dispatch. A run left out freed nothing this pass
    counted on; the next pass counts again."""
    if not chosen:
        return []
    ids = [run_id for run_id, *_ in chosen]
    # Loaded before the update, so each still reads queued and its transition starts there.
    runs = {run.id: run for run in await session.scalars(sa.select(Run).where(Run.id.in_(ids)))}
    taken = set(
        await session.scalars(
            sa.update(Run)
            .where(Run.id.in_(ids), Run.status == RunStatus.QUEUED)
            .values(status=RunStatus.DISPATCHED)
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
    )
    dispatched: Dispatched = []
    for run_id, agent, runtime, machine in chosen:
        if run_id in taken:
            run = runs[run_id]
            job = _record_dispatch(session, run, agent, runtime, machine, settings, render)
            dispatched.append((job, run))
    return dispatched


def _record_dispatch(
    session: AsyncSession,
    run: Run,
    agent: Agent,
    runtime: Runtime,
    machine: Machine,
    settings: Settings,
    render: JobRenderer,
) -> OutboxMessage:
    """Mark the run dispatched and record its job in the outbox (same transaction)."""
    run.machine_id = machine.id
    run_domain.transition(session, run, RunStatus.DISPATCHED, f"sent to {machine.name}")
    job = render(run, settings, runtime, agent)
    row = OutboxMessage(
        exchange=topology.JOBS_EXCHANGE,
        routing_key=topology.machine_routing_key(str(machine.id)),
        body=job.to_body(),
        priority=run_domain.effective_priority(run, utcnow()),
        headers={"run_id": str(run.id), "attempt": run.attempt},
        run_id=run.id,
    )
    session.add(row)
    return row


def why_waits(
    agent: Agent | None,
    machine: Machine | None,
    *,
    runtime_blocked: str | None,
    is_task: bool,
    subject_busy: bool,
    agent_load: int,
    machine_load: int,
) -> str | None:
    """Why a queued run cannot go now, or None when it may (`runtime_blocked`: what
    `runtime_blocker` says of its runtime)."""
    if agent is None or agent.archived_at is not None:
        return "the agent is archived"
    if runtime_blocked is not None:
        return runtime_blocked
    if subject_busy:
        return "task busy: another run is active" if is_task else "chat busy: a turn is running"
    if agent_load >= agent.concurrency_limit:
        return f"agent at {agent_load}/{agent.concurrency_limit}"
    if machine is not None and machine_load >= max(machine.capacity, 1):
        return f"{machine.name} at {machine_load}/{max(machine.capacity, 1)}"
    return None


async def lock_dispatch(session: AsyncSession, *, wait: bool) -> bool:
    """Take DISPATCH_LOCK for this transaction (PostgreSQL; SQLite needs none). With
    `wait=False`, False when another transaction holds it."""
    if not on_postgresql(session):
        return True
    if wait:
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(DISPATCH_LOCK)))
        return True
    return bool(await session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(DISPATCH_LOCK))))


async def dispatch_queued(
    session: AsyncSession, settings: Settings, render: JobRenderer = render_job
) -> Dispatched:
    """Dispatch, inside the caller's transaction, the runs it has just queued that could go at
    once and that nothing else waits ahead of (same agent, machine or subject). The jobs are
    also left in `session.info` for the Scheduler to publish after the commit. A run that
    cannot go stays queued for the scheduler's pass, which the queuing has already asked for.
    """
    # Runs this transaction moved to queued: no other transaction sees them queued (a pass that
    # finds one later waits for this one's row lock, then finds it dispatched), so no
    # conditional update is needed.
    queued = [
        run for run in session.info.pop(run_domain.QUEUED_KEY, []) if run.status is RunStatus.QUEUED
    ]
    if len(queued) != 1:
        # Several (a comment that tags two agents): the database would not count the first
        # one's dispatch against the second, so the pass orders them.
        return []
    (run,) = queued
    # The reads below need not flush: a new run is then inserted once, already dispatched.
    with session.no_autoflush:
        if not await lock_dispatch(session, wait=False):
            return []  # a pass or another request is deciding: the pass takes it
        job = await _dispatch_new(session, run, settings, render, utcnow())
    if job is None:
        return []
    dispatched: Dispatched = [(job, run)]
    session.info.setdefault(DISPATCHED_KEY, []).extend(dispatched)
    if not session.info.get(run_domain.FREED_KEY):
        # What was queued here is on its way and no slot was freed: no pass needed.
        session.info.get(KICK_KEY, set()).discard("dispatch")
    return dispatched


def _placement_statement(subject_column: str) -> sa.Select[Any]:
    """The agent, runtime and machine of a new run, and the active runs that share its agent,
    machine or subject: how many are on a machine, and whether any waits. One statement,
    built once per subject kind (building and keying it costs more than running it)."""
    run_id: sa.BindParameter[Any] = sa.bindparam("run_id")
    agent_id: sa.BindParameter[Any] = sa.bindparam("agent_id")
    runtime_id: sa.BindParameter[Any] = sa.bindparam("runtime_id")
    subject_id: sa.BindParameter[Any] = sa.bindparam("subject_id")
    machine_id = sa.select(Runtime.machine_id).where(Runtime.id == runtime_id).scalar_subquery()
    other, other_runtime = aliased(Run), aliased(Runtime)
    on_machine = other.status.in_(run_domain.ON_MACHINE)
    subject = getattr(other, subject_column) == subject_id

    def count(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.count(sa.case((sa.and_(*conditions), 1)))

    loads = (
        sa.select(
            count(on_machine, other.agent_id == agent_id).label("agent_load"),
            count(on_machine, other.machine_id == machine_id).label("machine_load"),
            count(on_machine, subject).label("subject_busy"),
            count(other.status == RunStatus.QUEUED).label("waiting"),
        )
        .select_from(other)
        .outerjoin(other_runtime, other_runtime.id == other.runtime_id)
        .where(
            other.status.in_(run_domain.ACTIVE),
            other.id != run_id,
            sa.or_(
                other.agent_id == agent_id,
                other.machine_id == machine_id,
                other_runtime.machine_id == machine_id,
                subject,
            ),
        )
        .subquery()
    )
    return (
        sa.select(Agent, Runtime, Machine, loads)
        .select_from(Runtime)
        .join(Machine, Machine.id == Runtime.machine_id)
        .join(Agent, Agent.id == agent_id)
        .join(loads, sa.true())
        .where(Runtime.id == runtime_id)
    )


_PLACEMENT = {"task": _placement_statement("task_id"), "chat": _placement_statement("chat_id")}


async def _dispatch_new(
    session: AsyncSession, run: Run, settings: Settings, render: JobRenderer, now: datetime
) -> OutboxMessage | None:
    if run.runtime_id is None:
        return None
    row = (
        await session.execute(
            _PLACEMENT["task" if run.task_id else "chat"],
            {
                "run_id": run.id,
                "agent_id": run.agent_id,
                "runtime_id": run.runtime_id,
                "subject_id": run.task_id or run.chat_id,
            },
        )
    ).first()
    if row is None or row.waiting:
        return None  # others wait ahead of it: the pass decides the order
    agent, runtime, machine = row[0], row[1], row[2]
    reason = why_waits(
        agent,
        machine,
        runtime_blocked=runtime_blocker(runtime, machine, settings, now),
        is_task=run.task_id is not None,
        subject_busy=row.subject_busy > 0,
        agent_load=row.agent_load,
        machine_load=row.machine_load,
    )
    if reason is not None:
        return None
    return _record_dispatch(session, run, agent, runtime, machine, settings, render)


class Scheduler:
    """Runs a pass when kicked (a run queued or finished, a machine changed) and every second."""

    def __init__(
        self,
        settings: Settings,
        session_factory: SessionFactory,
        hub: LiveHub,
        relay: Relay | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.hub = hub
        self.relay = relay
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        # Jobs dispatched inside a request go out right after that request's commit.
        self._session_class: type[Session] | None = session_factory.kw.get("sync_session_class")
        if self._session_class is not None:
            event.listen(self._session_class, "after_commit", self._after_commit)
            event.listen(self._session_class, "after_soft_rollback", self._after_rollback)

    async def dispatch_queued(self, session: AsyncSession) -> int:
        """Dispatch what this request queued, if it can go at once (see `dispatch_queued`)."""
        return len(await dispatch_queued(session, self.settings))

    def _after_commit(self, session: Session) -> None:
        session.info.pop(run_domain.QUEUED_KEY, None)
        session.info.pop(run_domain.FREED_KEY, None)
        dispatched: Dispatched | None = session.info.pop(DISPATCHED_KEY, None)
        if dispatched:
            task = asyncio.get_running_loop().create_task(self._send(dispatched))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    @staticmethod
    def _after_rollback(session: Session, _previous: object) -> None:
        for key in (DISPATCHED_KEY, run_domain.QUEUED_KEY, run_domain.FREED_KEY):
            session.info.pop(key, None)

    async def _send(self, dispatched: Dispatched) -> None:
        if self.relay is None:
            self.hub.kick("relay")
            return
        try:
            await self.relay.send_dispatched(dispatched)
        except Exception:  # the rows wait in the outbox; the relay's loop retries
            log.warning("direct publish failed; left to the relay", exc_info=True)
            self.hub.kick("relay")

    async def pass_once(self) -> int:
        async with self.session_factory() as session:
            dispatched = await schedule_once(session, self.settings)
            await session.commit()
        if dispatched:
            await self._send(dispatched)
        return len(dispatched)

    async def _loop(self) -> None:
        wake = self.hub.kick_event("dispatch")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=1.0)
            wake.clear()
            try:
                await self.pass_once()
            except Exception:  # a failed pass must not stop scheduling
                log.exception("scheduling pass failed")
                await asyncio.sleep(0.5)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._session_class is not None:
            event.remove(self._session_class, "after_commit", self._after_commit)
            event.remove(self._session_class, "after_soft_rollback", self._after_rollback)
            self._session_class = None
        await stop_task(self._task)
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
