"""A passive checkpoint of a SQLite database's write-ahead log, for a worker thread: the
server's database (`taskmachine.checkpointer`) and the daemon's spool both use it. Plain
`sqlite3`, so the daemon can import it without the server's dependencies."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def passive_checkpoint(path: Path) -> None:
    """Copy what the log holds into the database file, on a connection of its own. Passive: it
    takes no lock a reader or the writer needs, and leaves what it cannot copy now for the
    next time."""
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        connection.close()
