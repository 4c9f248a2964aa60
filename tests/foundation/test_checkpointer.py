"""SQLite's log is copied into the database by a checkpointer of its own, off the writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from taskmachine.checkpointer import WalCheckpointer, sqlite_path


class _State:
    def __init__(self, url: str) -> None:
        self.settings: Any = type("S", (), {"resolved_database_url": url})()


def test_only_a_sqlite_file_has_a_path() -> None:
    assert sqlite_path("sqlite+aiosqlite:////var/x/tm.db") == Path("/var/x/tm.db")
    assert sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_path("postgresql+asyncpg://u@127.0.0.1/db") is None


async def test_the_log_reaches_the_database_without_the_writer_checkpointing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tm.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # the writer never checkpoints here
    writer.execute("CREATE TABLE t (x TEXT)")
    size_before = path.stat().st_size
    checkpointer = WalCheckpointer(interval=0.05)
    await checkpointer.start(_State(f"sqlite+aiosqlite:///{path}"))  # type: ignore[arg-type]
    try:
        for _ in range(200):
            writer.execute("INSERT INTO t VALUES (?)", ("x" * 1000,))
        for _ in range(100):
            if path.stat().st_size > size_before + 100_000:
                break
            await asyncio.sleep(0.05)
        assert path.stat().st_size > size_before + 100_000  # pages copied into the file
    finally:
        await checkpointer.stop()
        writer.close()


async def test_another_database_gets_no_checkpointer() -> None:
    checkpointer = WalCheckpointer(interval=0.01)
    await checkpointer.start(_State("postgresql+asyncpg://u@127.0.0.1/db"))  # type: ignore[arg-type]
    assert checkpointer._task is None
    await checkpointer.stop()
