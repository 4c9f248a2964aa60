"""The scheduler's pass under a deep queue: its cost with many runs waiting, beside its own read.

A fresh database (SQLite in a temporary folder; PostgreSQL: a throw-away database) holds one
online machine, four agents (each at its concurrency limit of 1 with a run on the machine) and
`--runs` queued runs, spread over the agents, each on a task of its own. Nothing else runs on the
event loop, so a sample's wall time is the pass's own (its CPU and its database's answers).

Printed per database, p50 / p99 over `--samples` passes:

- floor: the queued runs read in one statement, three of the nine columns the pass reads;
- steady: a pass where nothing changed (every run waits for the same reason, in the same place);
- moving: a pass after one run of an agent finished, so that agent's next run goes and every run
  behind it moves up one place (what a pass does under load: a dispatch and hundreds of new
  places written).

The live events a pass emits are not sent (no LiveHub here); their fan-out is measured with the
rest of the server by bench/dispatch.py.

    .venv/bin/python -m bench.scheduler_pass [--runs 1000] [--samples 40]
        [--backends sqlite,postgres]

The last line is one JSON object: the first database's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.dispatch import database
from taskmachine import __version__
from taskmachine import models as m
from taskmachine.db import SessionFactory, create_engine, create_session_factory
from taskmachine.dispatcher.scheduler import schedule_once
from taskmachine.migrate import upgrade
from taskmachine.server_cli import _tune_gc as tune_gc
from taskmachine.settings import Settings

AGENTS = 4


def seed(runs: int) -> list[list[m.Base]]:
    """The rows, in groups to flush in order (the models declare no relationships to sort by)."""
    now = m.utcnow()
    user = m.User(email="bench@example.com")
    workspace = m.Workspace(name="Bench", slug=f"bench-{secrets.token_hex(3)}")
    machine = m.Machine(
        name="box",
        owner_user_id=user.id,
        status=m.MachineStatus.ONLINE,
        last_heartbeat_at=now,
        cli_version=__version__,
        capacity=10_000,
    )
    runtime = m.Runtime(machine_id=machine.id, name="claude", available=True, enabled=True)
    agents = [
        m.Agent(workspace_id=workspace.id, name=f"Agent {i}", handle=f"agent{i}")
        for i in range(AGENTS)
    ]
    tasks: list[m.Base] = []
    queue: list[m.Base] = []
    for i in range(runs + AGENTS):
        task = m.Task(workspace_id=workspace.id, number=i + 1, title=f"Task {i + 1}")
        on_machine = i < AGENTS
        run = m.Run(
            workspace_id=workspace.id,
            agent_id=agents[i % AGENTS].id,
            task_id=task.id,
            trigger_kind=m.TriggerKind.ASSIGNMENT,
            input="Do the task. " * 40,
            compiled_prompt="You are an agent. " * 200,
            runtime_id=runtime.id,
            machine_id=machine.id if on_machine else None,
            status=m.RunStatus.RUNNING if on_machine else m.RunStatus.QUEUED,
            priority=i % 5,
            created_at=now - timedelta(seconds=runs - i),
        )
        tasks.append(task)
        queue.append(run)
    return [[user, workspace], [machine], [runtime, *agents], tasks, queue]


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


async def timed(
    samples: int, before: Callable[[], Awaitable[None]] | None, body: Callable[[], Awaitable[None]]
) -> list[float]:
    out = []
    for _ in range(samples):
        if before is not None:
            await before()
        started = time.perf_counter()
        await body()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def bench_backend(backend: str, runs: int, samples: int) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="tama-bench-pass-") as tmp:
        async with database(backend, Path(tmp)) as url:
            settings = Settings(data_dir=Path(tmp) / "data", database_url=url, log_json=False)
            engine = create_engine(settings)
            try:
                await upgrade(engine)
                factory = create_session_factory(engine)
                async with factory() as session:
                    for group in seed(runs):
                        session.add_all(group)
                        await session.flush()
                    await session.commit()

                async def one_pass() -> None:
                    async with factory() as session:
                        await schedule_once(session, settings)
                        await session.commit()

                async def read() -> None:
                    async with factory() as session:
                        await session.execute(
                            sa.select(m.Run.id, m.Run.agent_id, m.Run.priority)
                            .where(m.Run.status == m.RunStatus.QUEUED)
                            .order_by(m.Run.id)
                            .limit(1000)
                        )

                async def finish_one() -> None:
                    """A run on the machine succeeds: its agent has a slot again."""
                    async with factory() as session:
                        victim = await session.scalar(
                            sa.select(m.Run.id)
                            .where(m.Run.status.in_((m.RunStatus.RUNNING, m.RunStatus.DISPATCHED)))
                            .limit(1)
                        )
                        await session.execute(
                            sa.update(m.Run)
                            .where(m.Run.id == victim)
                            .values(status=m.RunStatus.SUCCEEDED, finished_at=m.utcnow())
                        )
                        await session.commit()

                tune_gc()  # as `taskmachine serve` does: the shipped default
                await one_pass()  # places written once: the steady passes change nothing
                floor = await timed(samples, None, read)
                steady = await timed(samples, None, one_pass)
                moving = await timed(samples, finish_one, one_pass)
                left = await _count_queued(factory)
            finally:
                await engine.dispose()
    figures: dict[str, float | str] = {"database": backend, "queued_after": left}
    print(f"== {backend}: {runs} runs queued, 4 agents at 1/1 ==")
    for name, values in (
        ("floor: the queued runs", floor),
        ("steady pass", steady),
        ("moving pass", moving),
    ):
        p50, p99 = summary(values)
        key = name.split(":")[0].split()[0]
        figures[f"{key}_p50_ms"], figures[f"{key}_p99_ms"] = round(p50, 2), round(p99, 2)
        beside = f"   p50 = {p50 / summary(floor)[0]:.1f}× the floor" if values is not floor else ""
        print(f"  {name:<26} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   (n={len(values)}){beside}")
    return figures


async def _count_queued(factory: SessionFactory) -> int:
    async with factory() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).where(m.Run.status == m.RunStatus.QUEUED)
        )
        return int(count or 0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    if args.runs < AGENTS or args.samples < 1:
        parser.error("--runs must be at least 4 and --samples at least 1")
    print(f"bench/scheduler_pass.py: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    results = [await bench_backend(b, args.runs, args.samples) for b in args.backends.split(",")]
    print(json.dumps(results[0]))


if __name__ == "__main__":
    asyncio.run(main())
