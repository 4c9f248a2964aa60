"""SQLite's write-ahead log copied into the database off the writer's connection.

By default SQLite checkpoints inside the commit that takes the log past 1,000 pages: that commit
copies the pages and syncs the database file while it still holds the engine's one connection,
and every API request behind it waits (under heartbeat load, one commit in a few seconds took
tens of milliseconds more). This component runs a passive checkpoint every second on a
connection of its own, in a worker thread: it copies what it can without taking any lock a
reader or the writer needs, so the log stays short and the writer's commits rarely reach the
threshold. SQLite's own checkpoint stays on as the safety net.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from taskmachine.background import stop_task
from taskmachine.schema.state import AppState
from taskmachine.wal_checkpoint import passive_checkpoint

log = logging.getLogger("taskmachine.checkpointer")

INTERVAL_SECONDS = 1.0


def sqlite_path(database_url: str) -> Path | None:
    """The database file of a SQLite URL; None for another database or an in-memory one."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


class WalCheckpointer:
    """A server component; does nothing unless the database is a SQLite file."""

    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self, state: AppState) -> None:
        path = sqlite_path(state.settings.resolved_database_url)
        if path is not None:
            self._task = asyncio.create_task(self._run(path), name="wal-checkpointer")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _run(self, path: Path) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(passive_checkpoint, path)
            except sqlite3.Error as exc:  # busy or locked: the next round, or SQLite's own
                log.debug("passive checkpoint skipped: %s", exc)
