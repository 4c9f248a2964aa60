"""PostgreSQL's pool: a connection that died in it is replaced before a request uses it; its
connections outlive bursts; a quiet server keeps using its most recent one; a connection lent
in autocommit (as the claim desk does) comes back transactional."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from taskmachine.db import create_engine, create_session_factory
from taskmachine.settings import Settings
from tests.conftest import Templates, _pg_execute


async def test_a_killed_pooled_connection_is_replaced_unseen(
    templates: Templates, tmp_path: Path
) -> None:
    url, name = await templates.clone("postgres")
    engine = create_engine(Settings(data_dir=tmp_path, database_url=url))
    factory = create_session_factory(engine)
    try:
        async with factory() as session:
            killed = await session.scalar(sa.text("SELECT pg_backend_pid()"))
        await _pg_execute(f"SELECT pg_terminate_backend({int(killed)})")
        async with factory() as session:
            # The same pool, the next request: it gets a live connection, not an error.
            replaced = await session.scalar(sa.text("SELECT pg_backend_pid()"))
        assert replaced != killed
    finally:
        await engine.dispose()
        await templates.drop(name)


async def test_bursts_reuse_the_pools_connections(templates: Templates, tmp_path: Path) -> None:
    """Connections up to the pool's size stay open between bursts (a new one is a new backend,
    its handshake and its prepared statements); a burst beyond size and overflow waits."""
    url, name = await templates.clone("postgres")
    engine = create_engine(
        Settings(
            data_dir=tmp_path, database_url=url, database_pool_size=4, database_pool_overflow=0
        )
    )
    factory = create_session_factory(engine)

    async def backend() -> int:
        async with factory() as session:
            pid = await session.scalar(sa.text("SELECT pg_backend_pid() FROM pg_sleep(0.05)"))
            return int(pid)

    try:
        first = set(await asyncio.gather(*(backend() for _ in range(8))))
        second = set(await asyncio.gather(*(backend() for _ in range(8))))
        assert len(first) == 4
        assert second == first
    finally:
        await engine.dispose()
        await templates.drop(name)


async def test_one_request_at_a_time_keeps_to_one_backend(
    templates: Templates, tmp_path: Path
) -> None:
    """After a burst opened several connections, requests that come one at a time all use the
    one returned last (its statements prepared, its backend warm), not each pooled one in turn."""
    url, name = await templates.clone("postgres")
    engine = create_engine(
        Settings(
            data_dir=tmp_path, database_url=url, database_pool_size=4, database_pool_overflow=0
        )
    )
    factory = create_session_factory(engine)

    async def backend(pause: float = 0.0) -> int:
        async with factory() as session:
            pid = await session.scalar(sa.text(f"SELECT pg_backend_pid() FROM pg_sleep({pause})"))
            return int(pid)

    try:
        burst = set(await asyncio.gather(*(backend(0.05) for _ in range(4))))
        assert len(burst) == 4
        quiet = {await backend() for _ in range(8)}
        assert len(quiet) == 1
        assert quiet <= burst
    finally:
        await engine.dispose()
        await templates.drop(name)


async def test_a_connection_lent_in_autocommit_comes_back_transactional(
    templates: Templates, tmp_path: Path
) -> None:
    """The claim desk runs its one statement with no transaction around it. The next request on
    the same connection must get a transaction again: its rollback undoes its writes."""
    url, name = await templates.clone("postgres")
    engine = create_engine(
        Settings(
            data_dir=tmp_path, database_url=url, database_pool_size=1, database_pool_overflow=0
        )
    )
    factory = create_session_factory(engine)
    try:
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
    finally:
        await engine.dispose()
        await templates.drop(name)
