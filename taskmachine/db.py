"""The database engine and sessions: SQLite (embedded default) or PostgreSQL, both async."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_

from taskmachine.settings import Settings
from taskmachine.sqlite_driver import OneTripDBAPI

SessionFactory = async_sessionmaker[AsyncSession]


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run beside the one writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
    # instead of one failing with "database is locked" when it upgrades a read transaction.
    # Sent straight to aiosqlite: one trip to its thread, where a cursor through SQLAlchemy's
    # adapter takes three (cursor, execute, close), and every transaction begins here.
    driver = connection.connection.driver_connection
    await_(driver.execute("BEGIN IMMEDIATE"))


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # One connection per engine: SQLite has one writer anyway, and waiting for the pool is
        # an asyncio wait that hands over at once, where SQLite's own busy handler sleeps
        # 1, 2, 5 … 100 ms between tries and under load gives up with "database is locked".
        # Code must not open a second session while holding one (it would wait on itself).
        engine = create_async_engine(
            url,
            echo=settings.database_echo,
            connect_args={"isolation_level": None},
            module=OneTripDBAPI(),  # one trip to aiosqlite's thread a statement, not four
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
        )
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_on_connect)
        event.listen(sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url, echo=settings.database_echo, pool_size=10, max_overflow=20, pool_pre_ping=True
    )


def create_session_factory(
    engine: AsyncEngine, sync_session_class: type[Session] = Session
) -> SessionFactory:
    # expire_on_commit=False: objects stay readable after the request's commit.
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=True, sync_session_class=sync_session_class
    )
