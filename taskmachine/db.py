"""The database engine and sessions: SQLite (embedded default) or PostgreSQL, both async."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
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


def on_postgresql(session: AsyncSession) -> bool:
    """Whether the session's database is PostgreSQL (the few statements that differ ask)."""
    return session.get_bind().dialect.name == "postgresql"


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
    engine = create_async_engine(
        url,
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_overflow,
        # The most recently returned connection first: a quiet server keeps using one warm
        # backend instead of taking each pooled one in turn, after it sat idle for the others.
        pool_use_lifo=True,
        # Room for every statement the server sends, per connection (the default, 100, let
        # hot statements be prepared again when a connection had served other pages).
        connect_args={"prepared_statement_cache_size": 500},
    )
    event.listen(engine.sync_engine.pool, "connect", _mark_fresh)
    event.listen(engine.sync_engine.pool, "checkout", _ping_on_checkout)
    return engine


_FRESH = "taskmachine.fresh"


def _mark_fresh(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_FRESH] = True


def _ping_on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """A pooled connection whose server went away (a restart, a killed backend) is replaced
    before anyone uses it: SQLAlchemy's `pool_pre_ping`, in one round trip. Its asyncpg ping
    wraps the query in BEGIN … ROLLBACK (three round trips on every checkout) to suit
    pgbouncer's transaction mode, which is not how we connect."""
    if record.info.pop(_FRESH, False):
        return  # connected just now
    try:
        await_(dbapi_connection.driver_connection.fetchrow(";"))
    except Exception as exc:
        # The pool drops this connection and checks out a new one.
        raise DisconnectionError("the pooled connection no longer answers") from exc


def create_session_factory(
    engine: AsyncEngine, sync_session_class: type[Session] = Session
) -> SessionFactory:
    # expire_on_commit=False: objects stay readable after the request's commit.
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=True, sync_session_class=sync_session_class
    )
