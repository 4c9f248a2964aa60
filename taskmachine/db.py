"""The database engine and sessions: SQLite (embedded default) or PostgreSQL, both async."""

from __future__ import annotations

import asyncio
import sqlite3
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
from sqlalchemy.util import await_only

from taskmachine.settings import Settings

SessionFactory = async_sessionmaker[AsyncSession]


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run beside the one writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# As long as SQLite's own busy_timeout: then a writer gives up the same way.
_WRITE_WAIT_SECONDS = 10.0


class _SqliteWriterQueue:
    """One transaction at a time per engine, queued on an asyncio lock.

    Every transaction starts with BEGIN IMMEDIATE (the write lock up front, so two writers never
    fail with "database is locked" upgrading a read transaction). Left to SQLite, a second writer
    polls the lock in its busy handler, sleeping 1, 2, 5, 10 … 100 ms between tries: tens of ms
    lost per collision (the relay's commit vs the daemon's claim, ingest vs the scheduler). Here
    it waits on a lock that hands over the moment the holder commits or rolls back.
    """

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._holders: set[int] = set()

    def begin(self, connection: Any) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        try:
            # Runs inside SQLAlchemy's greenlet: this awaits on the event loop without blocking it.
            await_only(asyncio.wait_for(self._lock.acquire(), _WRITE_WAIT_SECONDS))
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        key = id(connection.connection.dbapi_connection)
        self._holders.add(key)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.release(key)
            raise

    def release(self, key: int) -> None:
        if key in self._holders:
            self._holders.discard(key)
            assert self._lock is not None
            self._lock.release()

    def install(self, sync_engine: Engine) -> None:
        dialect = sync_engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def key_of(connection: Any) -> int:
            return id(getattr(connection, "dbapi_connection", connection))

        # Released after COMMIT/ROLLBACK returns, so the next writer's BEGIN never meets the lock.
        def do_commit(connection: Any) -> None:
            try:
                commit(connection)
            finally:
                self.release(key_of(connection))

        def do_rollback(connection: Any) -> None:
            try:
                rollback(connection)
            finally:
                self.release(key_of(connection))

        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]
        event.listen(sync_engine, "begin", self.begin)
        # A connection closed or invalidated mid-transaction ends that transaction too.
        for name in ("close", "invalidate", "soft_invalidate"):
            event.listen(
                sync_engine.pool,
                name,
                lambda dbapi_connection, *_: self.release(id(dbapi_connection)),
            )


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, echo=settings.database_echo, connect_args={"isolation_level": None}
        )
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_on_connect)
        _SqliteWriterQueue().install(sync_engine)
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
