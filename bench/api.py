"""Board query latency at 10,000 tasks, on SQLite and PostgreSQL, through the real server.

For each database: migrate a fresh one, bulk-insert a workspace of 10,000 tasks (people and agents
as assignees, comments on some, tags on some), start the real app (uvicorn on port 0 in this
loop, broker off), warm up, then time board pages one after another over HTTP with a personal
token, walking the To do column with varying cursors. Beside it, measured in the same run:

- floor "sql": the same page (assignee names, comment counts, tags) as one raw SQL statement on
  the same engine: what the database itself costs;
- floor "typename": `{ __typename }` through the same HTTP and GraphQL stack: what serving any
  request costs;
- "me": `{ me { id } }`, the smallest query that authenticates (token lookup and last-used update).

Then one diagnostic pass counts the SQL statements a board query issues, the time spent in them
and the full garbage collections during the timed board run. The garbage collector is tuned as
`taskmachine serve` does it (`--no-gc-freeze` leaves CPython's defaults); `--breakdown` also times
the page field by field. The last line is one JSON object with the figures; docs/performance.md
has them.

    .venv/bin/python bench/api.py [--tasks 10000] [--queries 400] [--backends sqlite,postgres]
                                  [--no-gc-freeze] [--breakdown]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskmachine import migrate
from taskmachine import models as m
from taskmachine.auth.tokens import TokenHasher, load_pepper
from taskmachine.db import create_engine, create_session_factory
from taskmachine.domain import people
from taskmachine.server import ServerOptions, create_app
from taskmachine.settings import Settings

PG_ADMIN = os.environ.get("TASKMACHINE_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
TARGET_P99_MS = 50.0
PAGE = 50

BOARD_NODE = (
    "id number title status priority assignee { ... on User { name } ... on Agent { name } } "
    "commentCount tags"
)
BOARD = (
    "query($ws: ID!, $after: String) {"
    " tasks(workspaceId: $ws, filter: {status: [TODO]}, first: 50, after: $after) {"
    f" edges {{ node {{ {BOARD_NODE} }} }} pageInfo {{ endCursor hasNextPage }} }} }}"
)
ASSIGNEE = "assignee { ... on User { name } ... on Agent { name } }"
# (label, node selection); an empty selection means an empty page (first: 0).
BREAKDOWN = [
    ("empty page (first: 0)", ""),
    ("page: id", "id"),
    ("+ scalars", "id number title status priority"),
    ("+ assignee", f"id number title status priority {ASSIGNEE}"),
    ("+ commentCount", f"id number title status priority {ASSIGNEE} commentCount"),
    ("+ tags (the board query)", BOARD_NODE),
]

# One statement for the same page: the floor the GraphQL path is compared with.
FLOOR_SQL = """
SELECT t.id, t.number, t.title, t.status, t.priority, COALESCE(u.name, a.name) AS assignee,
  (SELECT count(*) FROM comments c WHERE c.task_id = t.id) AS comment_count,
  (SELECT {tags} FROM task_tags g WHERE g.task_id = t.id) AS tags
FROM tasks t
LEFT JOIN users u ON u.id = t.assignee_user_id
LEFT JOIN agents a ON a.id = t.assignee_agent_id
WHERE t.workspace_id = :ws AND t.status = 'todo' AND t.id > :after
ORDER BY t.id LIMIT :limit
"""
TAG_AGGREGATE = {"sqlite": "group_concat(g.tag, ',')", "postgres": "string_agg(g.tag, ',')"}

STATUSES = [
    (m.TaskStatus.TODO, 40),
    (m.TaskStatus.BACKLOG, 15),
    (m.TaskStatus.IN_PROGRESS, 15),
    (m.TaskStatus.IN_REVIEW, 10),
    (m.TaskStatus.DONE, 15),
    (m.TaskStatus.BLOCKED, 3),
    (m.TaskStatus.CANCELLED, 2),
]
TAGS = ["backend", "frontend", "bug", "docs", "infra", "ux", "perf", "security"]
WORDS = "fix add move split speed up document test refactor board cursor login sync".split()  # noqa: SIM905


# --- numbers ------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Timing:
    name: str
    samples_ms: list[float]
    # CPU time of this process (client and server together) per call: steadier than wall time
    # when other work shares the machine.
    cpu_ms: float

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p99(self) -> float:
        return percentile(self.samples_ms, 99)

    def line(self) -> str:
        return (
            f"{self.name:<26} p50 {self.p50:7.2f} ms   p99 {self.p99:7.2f} ms   "
            f"cpu {self.cpu_ms:6.2f} ms/call   (n={len(self.samples_ms)})"
        )


async def timed(name: str, n: int, call: Callable[[int], Awaitable[None]]) -> Timing:
    samples: list[float] = []
    cpu_started = time.process_time()
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return Timing(name, samples, (time.process_time() - cpu_started) / n * 1000)


# --- the database -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    """A fresh, migrated database; PostgreSQL's is created here and dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        engine = create_async_engine(url)
        await migrate.upgrade(engine)
        await engine.dispose()
        yield url
        return
    name = f"tm_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(f"{PG_ADMIN}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine = create_async_engine(f"{PG_ADMIN}/{name}")
        await migrate.upgrade(engine)
        await engine.dispose()
        yield f"{PG_ADMIN}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


@dataclass
class Seeded:
    workspace_id: uuid.UUID
    token: str
    todo: int


async def seed(settings: Settings, tasks: int) -> Seeded:
    """A workspace with `tasks` tasks, inserted in bulk; the token is made the real way."""
    rng = random.Random(7)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    now = datetime.now(UTC)
    try:
        async with sessions() as session:
            owner = await people.get_or_create_user(session, "bench@example.com")
            _, token = await people.create_api_token(
                session, TokenHasher(load_pepper(settings)), owner.id, "bench", None
            )
            workspace = m.Workspace(name="Bench", slug="bench", task_counter=tasks)
            session.add(workspace)
            await session.flush()
            users = [owner.id] + [m.new_id() for _ in range(20)]
            await session.execute(
                sa.insert(m.User),
                [
                    {"id": u, "email": f"member{i}@example.com", "name": f"Member {i}"}
                    for i, u in enumerate(users[1:])
                ],
            )
            await session.execute(
                sa.insert(m.Membership),
                [
                    {
                        "workspace_id": workspace.id,
                        "user_id": u,
                        "role": m.Role.OWNER if u == owner.id else m.Role.MEMBER,
                    }
                    for u in users
                ],
            )
            agents = [m.new_id() for _ in range(8)]
            await session.execute(
                sa.insert(m.Agent),
                [
                    {
                        "id": a,
                        "workspace_id": workspace.id,
                        "name": f"Agent {i}",
                        "handle": f"agent-{i}",
                    }
                    for i, a in enumerate(agents)
                ],
            )
            # Time-ordered ids, numbered in the same order (oldest first, as the API creates them).
            ids = sorted(m.new_id() for _ in range(tasks))
            statuses = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES], k=tasks)
            rows: list[dict[str, Any]] = []
            for number, (task_id, status) in enumerate(zip(ids, statuses, strict=True), start=1):
                kind = rng.random()
                created = now - timedelta(minutes=tasks - number)
                rows.append(
                    {
                        "id": task_id,
                        "workspace_id": workspace.id,
                        "number": number,
                        "title": " ".join(rng.choices(WORDS, k=6)).capitalize(),
                        "description": "",
                        "status": status,
                        "priority": rng.choice(list(m.TaskPriority)),
                        "assignee_user_id": rng.choice(users) if kind < 0.45 else None,
                        "assignee_agent_id": rng.choice(agents) if 0.45 <= kind < 0.85 else None,
                        "created_by_user_id": owner.id,
                        "created_at": created,
                        "updated_at": created,
                    }
                )
            tags: list[dict[str, Any]] = []
            comments: list[dict[str, Any]] = []
            for task_id in ids:
                if rng.random() < 0.3:
                    tags += [
                        {"task_id": task_id, "tag": t} for t in rng.sample(TAGS, rng.randint(1, 3))
                    ]
                if rng.random() < 0.3:
                    for _ in range(rng.randint(1, 6)):
                        by_agent = rng.random() < 0.4
                        comments.append(
                            {
                                "id": m.new_id(),
                                "workspace_id": workspace.id,
                                "task_id": task_id,
                                "author_user_id": None if by_agent else rng.choice(users),
                                "author_agent_id": rng.choice(agents) if by_agent else None,
                                "body": "Looks good; one question about the cursor handling.",
                            }
                        )
            for table, batch in ((m.Task, rows), (m.TaskTag, tags), (m.Comment, comments)):
                for start in range(0, len(batch), 2000):
                    await session.execute(sa.insert(table), batch[start : start + 2000])
            await session.commit()
            todo = sum(1 for s in statuses if s is m.TaskStatus.TODO)
            return Seeded(workspace.id, token, todo)
    finally:
        await engine.dispose()


# --- the server ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    app = create_app(settings, ServerOptions(migrate_on_start=False))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app.state.taskmachine
    finally:
        server.should_exit = True
        await task


class GcWatch:
    """Records how long each full (generation 2) garbage collection stops the process."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)


class StatementCounter:
    """Counts statements on an engine, and the time spent in them, inside its `with` block."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started: list[float] = []
        self._engine = engine.sync_engine

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self._engine, "before_cursor_execute", self._before)
        sa.event.listen(self._engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *_: object) -> None:
        sa.event.remove(self._engine, "before_cursor_execute", self._before)
        sa.event.remove(self._engine, "after_cursor_execute", self._after)

    def _before(self, *_: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, *_: Any) -> None:
        self.count += 1
        self.seconds += time.perf_counter() - self._started.pop()


# --- one backend --------------------------------------------------------------------------


async def bench_backend(
    backend: str, tasks: int, queries: int, gc_freeze: bool, with_breakdown: bool
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tm-bench-") as tmp:
        workdir = Path(tmp)
        async with database(backend, workdir) as url:
            settings = Settings(
                data_dir=workdir / "data",
                database_url=url,
                broker_enabled=False,
                secret_key="bench-pepper",
                log_json=False,
                log_level="WARNING",
            )
            started = time.perf_counter()
            seeded = await seed(settings, tasks)
            print(
                f"{backend}: seeded {tasks} tasks ({seeded.todo} in To do) "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            async with running_server(settings) as (base_url, state):
                if gc_freeze:
                    # What `taskmachine serve` does at start-up (freeze and thresholds).
                    from taskmachine.server_cli import _tune_gc

                    _tune_gc()
                try:
                    return await measure(backend, base_url, state, seeded, queries, with_breakdown)
                finally:
                    gc.unfreeze()


async def measure(
    backend: str,
    base_url: str,
    state: Any,
    seeded: Seeded,
    queries: int,
    with_breakdown: bool,
) -> dict[str, float]:
    headers = {"authorization": f"Bearer {seeded.token}"}
    ws = str(seeded.workspace_id)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def board(after: str | None) -> dict[str, Any]:
            response = await client.post(
                "/graphql", json={"query": BOARD, "variables": {"ws": ws, "after": after}}
            )
            body: dict[str, Any] = response.json()
            if response.status_code != 200 or body.get("errors"):
                raise RuntimeError(f"board query failed: {response.status_code} {body}")
            page: dict[str, Any] = body["data"]["tasks"]
            return page

        # Warm-up, which also walks the whole column once to collect every page's cursor.
        cursors: list[str | None] = [None]
        pages = 0
        while True:
            page = await board(cursors[-1])
            pages += 1
            if not page["pageInfo"]["hasNextPage"]:
                break
            cursors.append(page["pageInfo"]["endCursor"])
        if pages != math.ceil(seeded.todo / PAGE):
            raise RuntimeError(f"walked {pages} pages for {seeded.todo} tasks in To do")
        for i in range(30):
            await board(cursors[i % len(cursors)])

        # Spread the cursors over the column, not in walking order.
        order = random.Random(11).choices(cursors, k=queries)

        async def post(payload: dict[str, Any]) -> None:
            # A refused request would be fast and wrong: every timed answer must be data.
            response = await client.post("/graphql", json=payload)
            if response.status_code != 200 or b'"errors"' in response.content:
                raise RuntimeError(f"{payload['query'][:40]}: {response.text[:300]}")

        async def one_board(i: int) -> None:
            await post({"query": BOARD, "variables": {"ws": ws, "after": order[i]}})

        async def typename(_: int) -> None:
            await post({"query": "{ __typename }"})

        async def me(_: int) -> None:
            await post({"query": "{ me { id } }"})

        engine: AsyncEngine = state.services["engine"]
        floor_sql = sa.text(FLOOR_SQL.format(tags=TAG_AGGREGATE[backend])).bindparams(
            sa.bindparam("ws", type_=sa.Uuid()), sa.bindparam("after", type_=sa.Uuid())
        )
        sql_after = [uuid.UUID(int=0)] + [_decode(c) for c in cursors[1:]]
        sql_order = random.Random(11).choices(sql_after, k=queries)

        async def one_sql(i: int) -> None:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        floor_sql,
                        {"ws": seeded.workspace_id, "after": sql_order[i], "limit": PAGE + 1},
                    )
                ).all()
            if not rows:
                raise RuntimeError("the floor query found nothing")

        for _ in range(30):
            await one_sql(0)
            await typename(0)
            await me(0)
        with GcWatch() as collections:
            board_timing = await timed("board query (GraphQL)", queries, one_board)
        results = [
            board_timing,
            await timed("floor: raw SQL page", queries, one_sql),
            await timed("floor: { __typename }", queries, typename),
            await timed("{ me { id } } (auth only)", queries, me),
        ]

        # Diagnostics, apart from the timed runs: statements and time in the database.
        diag = 50
        with StatementCounter(engine) as counter:
            started = time.perf_counter()
            for i in range(diag):
                await one_board(i)
            wall = (time.perf_counter() - started) / diag * 1000

        breakdown: list[Timing] = []
        if with_breakdown:
            # Where a board query's CPU goes: the same page with fields added one at a time.
            for label, selection in BREAKDOWN:
                document = BOARD.replace(BOARD_NODE, selection)
                if selection == "":
                    document = BOARD.replace("first: 50", "first: 0").replace(BOARD_NODE, "id")

                async def variant(i: int, document: str = document) -> None:
                    await post({"query": document, "variables": {"ws": ws, "after": order[i]}})

                for i in range(20):
                    await variant(i)
                breakdown.append(await timed(label, 200, variant))

    board_t, sql_t, typename_t, me_t = results
    print(f"\n{backend} ({seeded.todo} tasks in To do, {len(cursors)} pages of {PAGE})")
    for timing in results:
        print("  " + timing.line())
    print(
        f"  board query: {counter.count / diag:.1f} SQL statements, "
        f"{counter.seconds / diag * 1000:.2f} ms of {wall:.2f} ms in the database driver"
    )
    full = collections.pauses_ms
    print(
        f"  during the board run: {len(full)} full garbage collections"
        + (f", longest {max(full):.1f} ms" if full else "")
    )
    if breakdown:
        print("  breakdown (CPU per call is the figure to compare):")
        for timing in breakdown:
            print("    " + timing.line())
    verdict = "meets" if board_t.p99 < TARGET_P99_MS else "MISSES"
    print(
        f"  board p99 {board_t.p99:.2f} ms {verdict} the {TARGET_P99_MS:.0f} ms target "
        f"(floors: SQL p99 {sql_t.p99:.2f} ms, typename p99 {typename_t.p99:.2f} ms)",
        flush=True,
    )
    return {
        f"board_p50_ms_{backend}": round(board_t.p50, 2),
        f"board_p99_ms_{backend}": round(board_t.p99, 2),
        f"floor_sql_p50_ms_{backend}": round(sql_t.p50, 2),
        f"floor_sql_p99_ms_{backend}": round(sql_t.p99, 2),
        f"floor_typename_p50_ms_{backend}": round(typename_t.p50, 2),
        f"floor_typename_p99_ms_{backend}": round(typename_t.p99, 2),
        f"me_p50_ms_{backend}": round(me_t.p50, 2),
        f"me_p99_ms_{backend}": round(me_t.p99, 2),
        f"board_cpu_ms_{backend}": round(board_t.cpu_ms, 2),
        f"floor_typename_cpu_ms_{backend}": round(typename_t.cpu_ms, 2),
        f"board_statements_{backend}": round(counter.count / diag, 1),
        f"board_full_gc_{backend}": len(full),
        f"board_full_gc_max_ms_{backend}": round(max(full, default=0.0), 2),
    }


def _decode(cursor: str | None) -> uuid.UUID:
    """A page cursor is the last id of the page before (taskmachine.schema.pagination)."""
    assert cursor is not None
    return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--backends", default="sqlite,postgres")
    # As shipped: `taskmachine serve` tunes the collector at start-up, so the bench does too.
    parser.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tune the garbage collector after start-up as `taskmachine serve` does (default); "
        "--no-gc-freeze measures CPython's defaults",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the board page field by field"
    )
    args = parser.parse_args(argv)
    if args.queries < 300:
        parser.error("--queries must be at least 300 for a meaningful p99")
    # The figures depend on what else the machine is doing: say so beside them.
    cores, load = os.cpu_count() or 0, os.getloadavg()[0]
    print(f"machine: {cores} cores, load average {load:.2f} at start, gc.freeze: {args.gc_freeze}")
    figures: dict[str, float] = {}
    for backend in args.backends.split(","):
        if backend not in TAG_AGGREGATE:
            parser.error(f"unknown backend {backend!r}: sqlite or postgres")
        figures.update(
            await bench_backend(backend, args.tasks, args.queries, args.gc_freeze, args.breakdown)
        )
    required = [f"board_{p}_ms_{b}" for b in ("sqlite", "postgres") for p in ("p50", "p99")]
    ordered = {k: figures[k] for k in required if k in figures}
    ordered.update({k: v for k, v in figures.items() if k not in ordered})
    ordered.update(
        cores=cores, load_avg_start=round(load, 2), load_avg_end=round(os.getloadavg()[0], 2)
    )
    print(json.dumps(ordered))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
