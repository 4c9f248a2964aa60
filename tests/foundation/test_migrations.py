"""The same migrations run on SQLite and PostgreSQL and agree with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from taskmachine import migrate
from taskmachine.models import Base


async def _diff(url: str) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: sync.dialect.get_table_names(sync)))
    finally:
        await engine.dispose()


async def test_models_and_migrations_agree(database_url: str) -> None:
    assert await _diff(database_url) == []


async def test_downgrade_to_base_then_upgrade(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        await migrate.downgrade(engine, "base")
        assert await _tables(database_url) <= {"alembic_version"}
        await migrate.upgrade(engine, "head")
    finally:
        await engine.dispose()
    assert set(Base.metadata.tables) <= await _tables(database_url)
    assert await _diff(database_url) == []
