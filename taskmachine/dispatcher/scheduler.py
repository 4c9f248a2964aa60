"""Capacity and order: which queued run goes to a machine next, and why the others wait.

A queued run goes when its agent is under its concurrency limit, its task (or chat) has no other
active run, its runtime is ready (machine online, runtime reported, enabled, daemon not below the
minimum version) and its machine has a free slot. Among those, higher effective priority first,
then age; a waiting run gains one level per five minutes (taskmachine.domain.runs), so the lowest
priority reaches the top within 45 minutes. Dispatch marks the run and records its job in the
outbox in one transaction; right after the commit the scheduler hands the jobs to the relay,
which publishes them (and, should that fail, retries from the outbox).

A dispatch is a conditional update (queued → dispatched), so two schedulers never send one run
twice; the in-memory counters make one pass consistent, and a later pass corrects any overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.db import SessionFactory
from taskmachine.dispatcher.relay import Relay
from taskmachine.domain import machines as machine_domain
from taskmachine.domain import runs as run_domain
from taskmachine.domain.events import emit, run_topic
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


def runtime_blocker(
    runtime: Runtime | None, machine: Machine | None, settings: Settings, now: datetime
) -> str | None:
    """Why a runtime cannot take new work, or None when it is ready."""
    if runtime is None or machine is None:
        return "the agent has no runtime"
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


async def schedule_once(
    session: AsyncSession, settings: Settings, render: JobRenderer = render_job
) -> Dispatched:
    """One pass; returns the jobs it recorded (published once the caller has committed)."""
    now = utcnow()
    # The queued runs with their agents, runtimes and machines: one statement.
    rows = (
        await session.execute(
            sa.select(Run, Agent, Runtime, Machine)
            .outerjoin(Agent, Agent.id == Run.agent_id)
            .outerjoin(Runtime, Runtime.id == Run.runtime_id)
            .outerjoin(Machine, Machine.id == Runtime.machine_id)
            .where(Run.status == RunStatus.QUEUED)
            .order_by(Run.id)
            .limit(BATCH)
        )
    ).all()
    if not rows:
        return []
    queued = [row[0] for row in rows]
    agents = {row[1].id: row[1] for row in rows if row[1] is not None}
    runtimes = {row[2].id: row[2] for row in rows if row[2] is not None}
    machines = {row[3].id: row[3] for row in rows if row[3] is not None}
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
    order = sorted(queued, key=lambda r: (-run_domain.effective_priority(r, now), r.id))
    dispatched: Dispatched = []
    position = 0
    for run in order:
        agent = agents.get(run.agent_id)
        runtime = runtimes.get(run.runtime_id) if run.runtime_id else None
        machine = machines.get(runtime.machine_id) if runtime else None
        subject = run.task_id or run.chat_id
        reason: str | None
        if agent is None or agent.archived_at is not None:
            reason = "the agent is archived"
        elif (reason := runtime_blocker(runtime, machine, settings, now)) is not None:
            pass
        elif subject in busy_subjects:
            reason = (
                "task busy: another run is active"
                if run.task_id
                else "chat busy: a turn is running"
            )
        elif agent_load[agent.id] >= agent.concurrency_limit:
            reason = f"agent at {agent_load[agent.id]}/{agent.concurrency_limit}"
        elif machine is not None and machine_load[machine.id] >= max(machine.capacity, 1):
            reason = f"{machine.name} at {machine_load[machine.id]}/{max(machine.capacity, 1)}"
        if reason is None:
            assert agent is not None and runtime is not None and machine is not None
            job = await _dispatch(session, run, agent, runtime, machine, settings, render)
            if job is not None:
                dispatched.append((job, run))
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
            run.queue_reason = reason
            run.queue_position = position
            emit(
                session,
                run_topic(run.id),
                {"kind": "queue", "reason": reason, "position": position},
            )
    return dispatched


async def _dispatch(
    session: AsyncSession,
    run: Run,
    agent: Agent,
    runtime: Runtime,
    machine: Machine,
    settings: Settings,
    render: JobRenderer,
) -> OutboxMessage | None:
    taken = await session.scalar(
        sa.update(Run)
        .where(Run.id == run.id, Run.status == RunStatus.QUEUED)
        .values(machine_id=machine.id)
        .returning(Run.id)
        # The run's object is updated by hand below; the default would evaluate this WHERE
        # against every run the pass loaded, in Python (milliseconds per dispatch).
        .execution_options(synchronize_session=False)
    )
    if taken is None:
        return None
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

    async def pass_once(self) -> int:
        async with self.session_factory() as session:
            dispatched = await schedule_once(session, self.settings)
            await session.commit()
        if dispatched:
            if self.relay is None:
                self.hub.kick("relay")
            else:
                try:
                    await self.relay.send_dispatched(dispatched)
                except Exception:  # the rows wait in the outbox; the relay's loop retries
                    log.warning("direct publish failed; left to the relay", exc_info=True)
                    self.hub.kick("relay")
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
