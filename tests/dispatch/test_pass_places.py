"""A pass over a line of waiting runs: each gets its reason and place, and when a slot frees the
first goes and every run behind it moves up one place (written in one statement a pass)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from taskmachine import __version__
from taskmachine import models as m
from taskmachine.dispatcher.scheduler import schedule_once
from taskmachine.settings import Settings

WAITING = 30


async def line_up(session_factory: Any) -> tuple[m.Run, list[m.Run]]:
    """An agent (limit 1) busy with one run on an online machine, and WAITING runs queued."""
    now = m.utcnow()
    user = m.User(email="owner@example.com")
    workspace = m.Workspace(name="W", slug="w")
    machine = m.Machine(
        name="box",
        owner_user_id=user.id,
        status=m.MachineStatus.ONLINE,
        last_heartbeat_at=now,
        cli_version=__version__,
        capacity=8,
    )
    runtime = m.Runtime(machine_id=machine.id, name="claude", available=True, enabled=True)
    agent = m.Agent(workspace_id=workspace.id, name="Coder", handle="coder")
    tasks = [
        m.Task(workspace_id=workspace.id, number=i + 1, title=f"T{i}") for i in range(WAITING + 1)
    ]

    def run(task: m.Task, status: m.RunStatus, priority: int, age: int) -> m.Run:
        return m.Run(
            workspace_id=workspace.id,
            agent_id=agent.id,
            task_id=task.id,
            trigger_kind=m.TriggerKind.ASSIGNMENT,
            input="do it",
            runtime_id=runtime.id,
            machine_id=machine.id if status is m.RunStatus.RUNNING else None,
            status=status,
            priority=priority,
            created_at=now - timedelta(seconds=age),
        )

    busy = run(tasks[0], m.RunStatus.RUNNING, 0, WAITING + 1)
    waiting = [
        run(task, m.RunStatus.QUEUED, i % 3, WAITING - i) for i, task in enumerate(tasks[1:])
    ]
    async with session_factory() as session:
        for group in ([user, workspace], [machine], [runtime, agent], tasks, [busy, *waiting]):
            session.add_all(group)
            await session.flush()
        await session.commit()
    return busy, waiting


async def places(session_factory: Any) -> list[tuple[Any, str | None, int | None]]:
    async with session_factory() as session:
        rows = await session.execute(
            sa.select(m.Run.id, m.Run.queue_reason, m.Run.queue_position)
            .where(m.Run.status == m.RunStatus.QUEUED)
            .order_by(m.Run.queue_position)
        )
        return [tuple(row) for row in rows]


async def one_pass(session_factory: Any, settings: Settings) -> list[Any]:
    async with session_factory() as session:
        dispatched = await schedule_once(session, settings)
        await session.commit()
    return [run.id for _, run in dispatched]


async def test_a_freed_slot_sends_the_first_and_moves_every_run_behind_it_up_one(
    session_factory: Any, settings: Settings
) -> None:
    busy, waiting = await line_up(session_factory)
    # Higher priority first, then the older (ids are time-ordered): the order the line must show.
    expected = [r.id for r in sorted(waiting, key=lambda r: (-r.priority, r.id))]

    assert await one_pass(session_factory, settings) == []
    first = await places(session_factory)
    assert [row[0] for row in first] == expected
    assert [row[2] for row in first] == list(range(1, WAITING + 1))
    assert {row[1] for row in first} == {"agent at 1/1"}

    async with session_factory() as session:
        await session.execute(
            sa.update(m.Run).where(m.Run.id == busy.id).values(status=m.RunStatus.SUCCEEDED)
        )
        # A run cancelled meanwhile leaves the line and keeps its state.
        await session.execute(
            sa.update(m.Run).where(m.Run.id == expected[5]).values(status=m.RunStatus.CANCELLED)
        )
        await session.commit()
    assert await one_pass(session_factory, settings) == [expected[0]]
    after = await places(session_factory)
    rest = [run_id for run_id in expected[1:] if run_id != expected[5]]
    assert [row[0] for row in after] == rest
    assert [row[2] for row in after] == list(range(1, len(rest) + 1))
    async with session_factory() as session:
        cancelled = await session.get(m.Run, expected[5])
        assert cancelled is not None and cancelled.status is m.RunStatus.CANCELLED
        outbox = await session.scalar(
            sa.select(sa.func.count()).where(m.OutboxMessage.run_id == expected[0])
        )
        assert outbox == 1
