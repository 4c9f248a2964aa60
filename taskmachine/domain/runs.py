"""Runs: every change of state goes through `transition`, guarded by a table of allowed moves.

queued → dispatched → claimed → running → succeeded | failed(code) | cancelled, with a retry
moving an active run back to queued under a new attempt. Each move is a row in the run's history
and an event on its task's timeline (or its chat).

The failure table (seed 002):
| situation                                 | outcome                                           |
|-------------------------------------------|---------------------------------------------------|
| not claimed within the claim deadline     | failed `runtime_offline`, task back to To do + why |
| lease lost (no renewal for 45 s)          | one retry from a clean worktree, then `lease_lost` |
| over the hard limit or idle too long      | failed `timeout`                                  |
| CLI exits non-zero                        | one retry (not auth/quota/config), then failed    |
| cancelled                                 | cancelled; a finished report is never retried     |
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth import tokens
from taskmachine.auth.principal import Principal
from taskmachine.db import on_postgresql
from taskmachine.domain.errors import Conflict
from taskmachine.domain.events import chat_topic, emit, kick, run_topic
from taskmachine.domain.tasks import record
from taskmachine.models import (
    Agent,
    Comment,
    Run,
    RunStatus,
    RunTransition,
    Task,
    TaskPriority,
    TaskStatus,
    TimelineKind,
    TriggerKind,
    new_id,
    utcnow,
)

ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.DISPATCHED, RunStatus.CLAIMED, RunStatus.RUNNING})
ON_MACHINE = frozenset({RunStatus.DISPATCHED, RunStatus.CLAIMED, RunStatus.RUNNING})
TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})

ALLOWED: dict[RunStatus | None, frozenset[RunStatus]] = {
    None: frozenset({RunStatus.QUEUED}),
    RunStatus.QUEUED: frozenset({RunStatus.DISPATCHED, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.DISPATCHED: frozenset(
        {RunStatus.CLAIMED, RunStatus.QUEUED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.CLAIMED: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.QUEUED,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}

# Agent-side failures that a retry cannot fix.
NOT_RETRYABLE = frozenset({"auth", "quota", "config"})

AMQP_PRIORITY = {
    TaskPriority.NONE: 1,
    TaskPriority.LOW: 3,
    TaskPriority.MEDIUM: 5,
    TaskPriority.HIGH: 7,
    TaskPriority.URGENT: 9,
}
CHAT_PRIORITY = 7  # a person is waiting for the answer
AGING_SECONDS = 300  # a waiting run gains one priority level per 5 minutes (top after 45 min)

# Runs this transaction moved to queued, and whether it freed a slot: the request that queued a
# run may dispatch it before committing (taskmachine.dispatcher.scheduler.dispatch_queued).
QUEUED_KEY = "taskmachine.queued"
FREED_KEY = "taskmachine.freed"


class IllegalTransition(Conflict):
    pass


class Aging(Protocol):
    """What a run's place in line is computed from (a Run, or the pass's light row)."""

    @property
    def priority(self) -> int: ...

    @property
    def created_at(self) -> datetime: ...


def effective_priority(run: Aging, now: datetime) -> int:
    waited = max(0.0, (now - run.created_at).total_seconds())
    return min(9, run.priority + int(waited // AGING_SECONDS))


def transition(
    session: AsyncSession,
    run: Run,
    to: RunStatus,
    reason: str = "",
    *,
    new: bool = False,
    **data: Any,
) -> RunTransition:
    """The one path for a run's change of state (`new` for the first, from nothing)."""
    previous = None if new else run.status
    if to not in ALLOWED[previous]:
        raise IllegalTransition(
            f"a {previous.value if previous else 'new'} run cannot become {to.value}"
        )
    now = utcnow()
    run.status = to
    if to is RunStatus.DISPATCHED:
        run.dispatched_at = now
    elif to is RunStatus.CLAIMED:
        run.claimed_at = now
    elif to is RunStatus.RUNNING:
        run.started_at = run.started_at or now
    elif to in TERMINAL:
        run.finished_at = now
        run.queue_reason = None
        run.queue_position = None
    entry = RunTransition(
        run_id=run.id, attempt=run.attempt, from_status=previous, to_status=to, reason=reason
    )
    session.add(entry)
    payload = {"status": to.value, "attempt": run.attempt, "reason": reason, **data}
    emit(session, run_topic(run.id), {"kind": "status", **payload})
    if run.chat_id is not None:
        emit(session, chat_topic(run.chat_id), {"run_id": str(run.id), "status": to.value})
    if to is RunStatus.QUEUED or to in TERMINAL:
        # New work, or a slot freed: worth a scheduling pass (the scheduler also runs each second).
        kick(session, "dispatch")
        if to is RunStatus.QUEUED:
            session.info.setdefault(QUEUED_KEY, []).append(run)
        if to in TERMINAL or previous in ON_MACHINE:
            session.info[FREED_KEY] = True
    return entry


def new_run(
    session: AsyncSession,
    *,
    agent: Agent,
    trigger_kind: TriggerKind,
    input: str,
    compiled_prompt: str,
    runtime_id: uuid.UUID | None,
    priority: int,
    task: Task | None = None,
    chat_id: uuid.UUID | None = None,
    thread_comment_id: uuid.UUID | None = None,
    follows_run_id: uuid.UUID | None = None,
    permission: str = "safe",
    session_id: str | None = None,
) -> Run:
    """Record a run before any daemon sees it: input, compiled prompt, runtime, queued."""
    run = Run(
        workspace_id=agent.workspace_id,
        agent_id=agent.id,
        task_id=task.id if task else None,
        chat_id=chat_id,
        thread_comment_id=thread_comment_id,
        trigger_kind=trigger_kind,
        input=input,
        compiled_prompt=compiled_prompt,
        runtime_id=runtime_id,
        priority=priority,
        attempt=1,
        max_attempts=2,
        token_nonce=secrets.token_hex(8),
        permission=permission,
        follows_run_id=follows_run_id,
        resume_session_id=session_id,
        usage={},
        # Set here, not left to column defaults: the run may be dispatched before its flush.
        clean_worktree=False,
        created_at=utcnow(),
    )
    session.add(run)
    transition(session, run, RunStatus.QUEUED, f"triggered by {trigger_kind.value}", new=True)
    if task is not None:
        record(
            session,
            Principal(agent_id=agent.id),
            task,
            TimelineKind.RUN,
            {"status": "queued", "attempt": 1, "trigger": trigger_kind.value},
            run_id=run.id,
        )
    return run


def _on_task_timeline(
    session: AsyncSession, run: Run, task: Task | None, data: dict[str, Any]
) -> None:
    if task is not None:
        record(
            session, Principal(agent_id=run.agent_id), task, TimelineKind.RUN, data, run_id=run.id
        )


async def _task(session: AsyncSession, run: Run) -> Task | None:
    return await session.get(Task, run.task_id) if run.task_id else None


# -- run tokens ----------------------------------------------------------------------------


def run_token(hasher: tokens.TokenHasher, run: Run) -> str:
    """Derived, not stored: HMAC over the run, its attempt and a per-run nonce."""
    mac = hasher.hash(f"run:{run.id}:{run.attempt}:{run.token_nonce}")[:40]
    return f"{tokens.RUN_TOKEN_PREFIX}{run.id.hex}.{run.attempt}.{mac}"


async def principal_for_run_token(
    session: AsyncSession, hasher: tokens.TokenHasher, secret: str
) -> Principal | None:
    """Valid only while its attempt is on a machine; the agent's role is the floor."""
    try:
        run_hex, attempt_text, _mac = secret.removeprefix(tokens.RUN_TOKEN_PREFIX).split(".")
        run_id, attempt = uuid.UUID(hex=run_hex), int(attempt_text)
    except ValueError:
        return None
    run = await session.get(Run, run_id)
    if run is None or run.attempt != attempt or run.status not in ON_MACHINE:
        return None
    if not hmac.compare_digest(run_token(hasher, run), secret):
        return None
    agent = await session.get(Agent, run.agent_id)
    if agent is None or agent.archived_at is not None:
        return None
    return Principal(
        agent_id=agent.id,
        run_id=run.id,
        workspace_id=run.workspace_id,
        agent_role=agent.role,
        via="run",
    )


# -- the machine side ------------------------------------------------------------------------


async def claim(
    session: AsyncSession, machine_id: uuid.UUID, run_id: uuid.UUID, attempt: int, lease: float
) -> bool:
    """Exactly one claim per attempt: a conditional update, the same on SQLite and PostgreSQL.

    The machine that holds the claim may ask again (its first answer was lost or came too
    late): it is told yes again, and nothing changes.
    """
    (accepted,) = await claim_many(session, [(machine_id, run_id, attempt)], lease)
    return accepted


_CLAIMED_BY_MACHINE = "claimed by its machine"
_Claimed = set[tuple[uuid.UUID, int, uuid.UUID | None]]


async def claim_many(
    session: AsyncSession, claims: list[tuple[uuid.UUID, uuid.UUID, int]], lease: float
) -> list[bool]:
    """`claim` for many (machine, run, attempt) at once, in a few statements: one conditional
    update for all (on PostgreSQL, with the history rows in the same statement), one read for
    those it did not take (the holder asking again)."""
    now = utcnow()
    wanted = list({(run_id, attempt, machine_id) for machine_id, run_id, attempt in claims})
    lease_ends = now + timedelta(seconds=lease)
    if on_postgresql(session):
        taken = await _claim_with_history(session, wanted, now, lease_ends)
    else:
        taken = await _claim_then_history(session, wanted, now, lease_ends)
    held: _Claimed = set()
    rest = {run_id for run_id, attempt, machine_id in wanted} - {t[0] for t in taken}
    if rest:
        held = {
            (row.id, row.attempt, row.machine_id)
            for row in await session.execute(
                sa.select(Run.id, Run.attempt, Run.machine_id).where(
                    Run.id.in_(rest), Run.status == RunStatus.CLAIMED
                )
            )
        }
    for run_id, attempt, _machine_id in taken:
        emit(
            session, run_topic(run_id), {"kind": "status", "status": "claimed", "attempt": attempt}
        )
    return [
        (run_id, attempt, machine_id) in taken or (run_id, attempt, machine_id) in held
        for machine_id, run_id, attempt in claims
    ]


async def _claim_then_history(
    session: AsyncSession,
    wanted: list[tuple[uuid.UUID, int, uuid.UUID]],
    now: datetime,
    lease_ends: datetime,
) -> _Claimed:
    taken = {
        (row.id, row.attempt, row.machine_id)
        for row in await session.execute(
            sa.update(Run)
            .where(
                sa.tuple_(Run.id, Run.attempt, Run.machine_id).in_(wanted),
                Run.status == RunStatus.DISPATCHED,
            )
            .values(status=RunStatus.CLAIMED, claimed_at=now, lease_expires_at=lease_ends)
            .returning(Run.id, Run.attempt, Run.machine_id)
            .execution_options(synchronize_session=False)
        )
    }
    for run_id, attempt, _machine_id in taken:
        session.add(
            RunTransition(
                run_id=run_id,
                attempt=attempt,
                from_status=RunStatus.DISPATCHED,
                to_status=RunStatus.CLAIMED,
                reason=_CLAIMED_BY_MACHINE,
            )
        )
    return taken


# PostgreSQL: the update and the history rows of what it took in one statement (a
# data-modifying CTE runs whether or not the query reads it), so a claim needs no transaction of
# its own (see ClaimDesk). Text, not Core: a VALUES list of the claims is not cached by
# SQLAlchemy, and compiling it again for every claim cost more than the round trips it saves.
_CLAIM_PG = sa.text(
    "WITH claimed AS ("
    " UPDATE runs SET status = :claimed, claimed_at = :now, lease_expires_at = :lease_ends"
    " FROM unnest(CAST(:runs AS uuid[]), CAST(:attempts AS integer[]),"
    " CAST(:machines AS uuid[]), CAST(:entries AS uuid[])) AS asked(id, attempt, machine_id, entry)"
    " WHERE runs.id = asked.id AND runs.attempt = asked.attempt"
    " AND runs.machine_id = asked.machine_id AND runs.status = :dispatched"
    " RETURNING runs.id, runs.attempt, runs.machine_id, asked.entry"
    "), logged AS ("
    " INSERT INTO run_transitions (id, run_id, attempt, from_status, to_status, reason, created_at)"
    " SELECT entry, id, attempt, :dispatched, :claimed, :reason, CAST(:now AS timestamptz)"
    " FROM claimed"
    ") SELECT id, attempt, machine_id FROM claimed"
).columns(id=sa.Uuid(), attempt=sa.Integer(), machine_id=sa.Uuid())


async def _claim_with_history(
    session: AsyncSession,
    wanted: list[tuple[uuid.UUID, int, uuid.UUID]],
    now: datetime,
    lease_ends: datetime,
) -> _Claimed:
    runs, attempts, machines = zip(*wanted, strict=True)
    rows = await session.execute(
        _CLAIM_PG,
        {
            "runs": list(runs),
            "attempts": list(attempts),
            "machines": list(machines),
            "entries": [new_id() for _ in wanted],
            "claimed": RunStatus.CLAIMED.value,
            "dispatched": RunStatus.DISPATCHED.value,
            "reason": _CLAIMED_BY_MACHINE,
            "now": now,
            "lease_ends": lease_ends,
        },
    )
    return {(row.id, row.attempt, row.machine_id) for row in rows}


async def started(session: AsyncSession, run: Run) -> None:
    if run.status is RunStatus.CLAIMED:
        transition(session, run, RunStatus.RUNNING, "the CLI started")
        _on_task_timeline(
            session, run, await _task(session, run), {"status": "running", "attempt": run.attempt}
        )


async def retry_or_fail(
    session: AsyncSession, run: Run, code: str, error: str | None, *, clean_worktree: bool = False
) -> None:
    task = await _task(session, run)
    if code not in NOT_RETRYABLE and run.attempt < run.max_attempts:
        transition(session, run, RunStatus.QUEUED, f"retry after {code}", failure_code=code)
        run.attempt += 1
        run.machine_id = None
        run.claimed_at = None
        run.lease_expires_at = None
        run.clean_worktree = clean_worktree
        run.error = error
        _on_task_timeline(
            session, run, task, {"status": "retrying", "attempt": run.attempt, "failure_code": code}
        )
        return
    run.failure_code = code
    run.error = error
    transition(session, run, RunStatus.FAILED, f"failed: {code}", failure_code=code)
    _on_task_timeline(
        session,
        run,
        task,
        {
            "status": "failed",
            "attempt": run.attempt,
            "failure_code": code,
            "error": (error or "")[-500:],
        },
    )


async def finished(
    session: AsyncSession,
    run: Run,
    outcome: str,
    *,
    failure_code: str | None = None,
    error: str | None = None,
    session_id: str | None = None,
    usage: dict[str, Any] | None = None,
    cost_usd: float | None = None,
    diff_stat: str | None = None,
) -> None:
    """Apply the daemon's final report; a run already ended ignores a repeated one."""
    if run.status not in (RunStatus.CLAIMED, RunStatus.RUNNING):
        return
    run.session_id = session_id or run.session_id
    if usage:
        run.usage = usage
    if cost_usd is not None:
        run.cost_usd = cost_usd
    run.diff_stat = diff_stat
    task = await _task(session, run)
    if outcome == "succeeded":
        transition(session, run, RunStatus.SUCCEEDED, "the CLI finished")
        _on_task_timeline(
            session,
            run,
            task,
            {"status": "succeeded", "attempt": run.attempt, "cost_usd": cost_usd},
        )
    elif outcome == "cancelled":
        transition(session, run, RunStatus.CANCELLED, "cancelled")
        _on_task_timeline(session, run, task, {"status": "cancelled", "attempt": run.attempt})
    elif outcome == "timeout":
        run.failure_code = "timeout"
        run.error = error
        transition(session, run, RunStatus.FAILED, "failed: timeout", failure_code="timeout")
        _on_task_timeline(
            session,
            run,
            task,
            {"status": "failed", "failure_code": "timeout", "attempt": run.attempt},
        )
    else:
        await retry_or_fail(session, run, failure_code or "cli_error", error)
    from taskmachine.loop.aftermath import after_run  # the loop builds on the domain

    await after_run(session, run)


async def fail_unclaimed(session: AsyncSession, run: Run) -> None:
    """No machine took it in time: fail, put the task back to To do and say why."""
    run.failure_code = "runtime_offline"
    transition(
        session, run, RunStatus.FAILED, "not claimed in time", failure_code="runtime_offline"
    )
    task = await _task(session, run)
    if task is None:
        return
    _on_task_timeline(session, run, task, {"status": "failed", "failure_code": "runtime_offline"})
    agent_principal = Principal(agent_id=run.agent_id, workspace_id=run.workspace_id, run_id=run.id)
    comment = Comment(
        workspace_id=task.workspace_id,
        task_id=task.id,
        author_agent_id=run.agent_id,
        run_id=run.id,
        body=(
            "I could not start: no machine claimed this run within the claim deadline "
            "(its runtime is offline). The task is back in To do."
        ),
    )
    session.add(comment)
    await session.flush()
    record(
        session,
        agent_principal,
        task,
        TimelineKind.COMMENTED,
        {"thread_id": str(comment.id)},
        comment_id=comment.id,
    )
    if task.status is not TaskStatus.TODO:
        previous = task.status
        task.status = TaskStatus.TODO
        task.updated_at = utcnow()
        record(
            session,
            agent_principal,
            task,
            TimelineKind.STATUS_CHANGED,
            {"from": previous.value, "to": TaskStatus.TODO.value, "reason": "runtime_offline"},
        )


# -- people's controls -------------------------------------------------------------------------


async def cancel(session: AsyncSession, run: Run) -> bool:
    """Cancel now if no machine has it; otherwise ask the machine (True: send CancelRun)."""
    if run.status in TERMINAL:
        raise Conflict(f"the run already {run.status.value}")
    if run.status in (RunStatus.QUEUED, RunStatus.DISPATCHED):
        transition(session, run, RunStatus.CANCELLED, "cancelled before it started")
        _on_task_timeline(
            session, run, await _task(session, run), {"status": "cancelled", "attempt": run.attempt}
        )
        return False
    run.cancel_requested_at = utcnow()
    emit(
        session,
        run_topic(run.id),
        {"kind": "status", "status": run.status.value, "cancel_requested": True},
    )
    return True
