"""The embedded SQLite engine answers statements as the stock aiosqlite adapter does, in one trip
to aiosqlite's thread each, and rolls back only a transaction that is open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from taskmachine.db import create_engine, create_session_factory
from taskmachine.settings import Settings

NOTES = sa.Table(
    "notes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String, nullable=False, unique=True),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(
        Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'tm.db'}")
    )
    async with engine.begin() as connection:
        await connection.run_sync(NOTES.metadata.create_all)
    yield engine
    await engine.dispose()


class _Trips:
    """Counts the functions the pooled connection hands to its aiosqlite thread."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.count = 0

    def __enter__(self) -> _Trips:
        run = self.driver._execute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await run(*args, **kwargs)

        self.driver._execute = counted
        return self

    def __exit__(self, *_: object) -> None:
        del self.driver._execute


async def _trips(engine: AsyncEngine) -> _Trips:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        return _Trips(raw.driver_connection)


async def test_results_counts_and_ids_come_back(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        inserted = await connection.execute(
            NOTES.insert().returning(NOTES.c.id), [{"text": "a"}, {"text": "b"}, {"text": "c"}]
        )
        assert sorted(inserted.scalars().all()) == [1, 2, 3]
        one = await connection.execute(NOTES.insert().values(text="d"))
        assert one.inserted_primary_key == (4,)
        updated = await connection.execute(
            NOTES.update().where(NOTES.c.id > 2).values(text=NOTES.c.text + "!")
        )
        assert updated.rowcount == 2
        many = await connection.execute(NOTES.insert(), [{"text": "e"}, {"text": "f"}])
        assert many.rowcount == 2
        rows = await connection.execute(sa.select(NOTES.c.text).order_by(NOTES.c.id))
        assert rows.scalars().all() == ["a", "b", "c!", "d!", "e", "f"]
        assert (await connection.execute(sa.select(NOTES).where(NOTES.c.id == 99))).first() is None


async def test_a_failed_statement_raises_and_its_transaction_changes_nothing(
    engine: AsyncEngine,
) -> None:
    factory = create_session_factory(engine)
    async with factory() as session:
        await session.execute(NOTES.insert().values(text="kept"))
        await session.commit()
    async with factory() as session:
        await session.execute(NOTES.insert().values(text="new"))
        with pytest.raises(IntegrityError):
            await session.execute(NOTES.insert().values(text="kept"))
        await session.rollback()
    async with factory() as session:
        assert (await session.scalars(sa.select(NOTES.c.text))).all() == ["kept"]


async def test_a_session_closed_without_commit_is_rolled_back(engine: AsyncEngine) -> None:
    factory = create_session_factory(engine)
    async with factory() as session:
        await session.execute(NOTES.insert().values(text="never committed"))
    async with factory() as session:
        assert (await session.scalars(sa.select(NOTES.c.text))).all() == []


async def test_each_statement_is_one_trip_and_a_commit_needs_no_rollback(
    engine: AsyncEngine,
) -> None:
    factory = create_session_factory(engine)
    with await _trips(engine) as trips:
        async with factory() as session:
            await session.execute(NOTES.insert().values(text="x"))
            await session.execute(NOTES.update().values(text="y"))
            assert (await session.scalars(sa.select(NOTES.c.text))).all() == ["y"]
            await session.commit()
    # BEGIN IMMEDIATE, three statements, COMMIT; the stock adapter takes four trips a
    # statement and one more for the pool's rollback on return (16 here).
    assert trips.count == 5
