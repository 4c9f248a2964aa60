"""PostgreSQL's pool: a connection that died in it is replaced before a request uses it; its
connections outlive bursts; a quiet server keeps using its most recent one; a connection lent
in autocommit (as the claim desk does) comes back transactional."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa

from taskmachine.db import SessionFactory, create_engine, create_session_factory
from taskmachine.settings import Settings
from tests.conftest import Templates, _pg_execute


@contextlib.asynccontextmanager
async def _pool(templates: Templates, tmp_path: Path, **pool: int) -> AsyncIterator[SessionFactory]:
    """Sessions from the server's own engine on a fresh database; `pool`: the pool's settings
    (`database_pool_size`, `database_pool_overflow`), else the defaults."""
    url, name = await templates.clone("postgres")
    engine = create_engine(Settings(data_dir=tmp_path, database_url=url).model_copy(update=pool))
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()
        await templates.drop(name)


async def _backend(factory: SessionFactory, pause: float = 0.0) -> int:
    """The backend that served one request (holding its connection `pause` seconds)."""
    async with factory() as session:
        pid = await session.scalar(sa.text(f"SELECT pg_backend_pid() FROM pg_sleep({pause})"))
        return int(pid)


async def test_a_killed_pooled_connection_is_replaced_unseen(
    templates: Templates, tmp_path: Path
) -> None:
    async with _pool(templates, tmp_path) as factory:
        killed = await _backend(factory)
        await _pg_execute(f"SELECT pg_terminate_backend({killed})")
        # The same pool, the next request: it gets a live connection, not an error.
        replaced = await _backend(factory)
        assert replaced != killed


async def test_bursts_reuse_the_pools_connections(templates: Templates, tmp_path: Path) -> None:
    """Connections up to the pool's size stay open between bursts (a new one is a new backend,
    its handshake and its prepared statements); a burst beyond size and overflow waits."""
    pool = {"database_pool_size": 4, "database_pool_overflow": 0}
    async with _pool(templates, tmp_path, **pool) as factory:
        first = set(await asyncio.gather(*(_backend(factory, 0.05) for _ in range(8))))
        second = set(await asyncio.gather(*(_backend(factory, 0.05) for _ in range(8))))
        assert len(first) == 4
        assert second == first


async def test_one_request_at_a_time_keeps_to_one_backend(
    templates: Templates, tmp_path: Path
) -> None:
    """After a burst opened several connections, requests that come one at a time all use the
    one returned last (its statements prepared, its backend warm), not each pooled one in turn."""
    pool = {"database_pool_size": 4, "database_pool_overflow": 0}
    async with _pool(templates, tmp_path, **pool) as factory:
        burst = set(await asyncio.gather(*(_backend(factory, 0.05) for _ in range(4))))
        assert len(burst) == 4
        quiet = {await _backend(factory) for _ in range(8)}
        assert len(quiet) == 1
        assert quiet <= burst


async def test_a_connection_lent_in_autocommit_comes_back_transactional(
    templates: Templates, tmp_path: Path
) -> None:
    """The claim desk runs its one statement with no transaction around it. The next request on
    the same connection must get a transaction again: its rollback undoes its writes."""
    pool = {"database_pool_size": 1, "database_pool_overflow": 0}
    async with _pool(templates, tmp_path, **pool) as factory:
        async with factory() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            lent = await session.scalar(sa.text("SELECT pg_backend_pid()"))
            await session.execute(sa.text("CREATE TABLE probe (n integer)"))
            await session.execute(sa.text("INSERT INTO probe VALUES (1)"))
            await session.commit()
        async with factory() as session:
            assert await session.scalar(sa.text("SELECT pg_backend_pid()")) == lent
            await session.execute(sa.text("INSERT INTO probe VALUES (2)"))
            await session.rollback()
        async with factory() as session:
            kept = (await session.scalars(sa.text("SELECT n FROM probe ORDER BY n"))).all()
        assert kept == [1]
