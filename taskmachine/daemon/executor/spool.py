"""The local event spool: every run event is written here before it is published.

SQLite in the daemon's state directory (`spool.db`), two tables:

    events  the run events not yet confirmed by the broker, in the order they were made
    runs    every attempt this machine claimed: its state (claimed → running → finished), the
            next event number, and its process group while it runs

An event is deleted once the broker confirms it; whatever is left is published again, in order,
after a reconnect or a restart. The `runs` table survives a crash, so a restarted daemon knows
which attempts died with it (and reports them finished) and which deliveries are duplicates.
WAL with synchronous=NORMAL: a commit survives the process being killed (only power loss can
take the last commits), which is the failure this spool exists for. Every write is one statement
in autocommit mode: an event's append is a single INSERT, and a trigger advances its run in the
same statement (it sits on the path of every transcript line).

The statements run on the event loop's thread, on a plain sqlite3 connection: with WAL and
synchronous=NORMAL a commit writes the log without syncing it, ~30 µs for an append, where a
trip to a driver thread and back (aiosqlite) cost ~0.3–0.5 ms of a line's latency. What can
sync the disk, the checkpoint that copies the log into the database, is taken off the loop:
automatic checkpoints are off, and every `CHECKPOINT_EVERY` writes a passive checkpoint runs on
a connection of its own in a worker thread (it never blocks the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from taskmachine.wal_checkpoint import passive_checkpoint
from taskmachine.wire.runs import RunFinished, RunOutput, RunStarted

RunEvent = RunStarted | RunOutput | RunFinished
RunState = Literal["claimed", "running", "finished"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (run_id, attempt, seq)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, attempt)
);
CREATE TRIGGER IF NOT EXISTS events_advance_run AFTER INSERT ON events BEGIN
    INSERT INTO runs (run_id, attempt, state, next_seq, updated_at)
    VALUES (
        NEW.run_id,
        NEW.attempt,
        CASE NEW.kind WHEN 'finished' THEN 'finished' ELSE 'running' END,
        NEW.seq + 1,
        (julianday('now') - 2440587.5) * 86400.0
    )
    ON CONFLICT (run_id, attempt) DO UPDATE SET
        state = excluded.state,
        next_seq = max(runs.next_seq, excluded.next_seq),
        updated_at = excluded.updated_at;
END;
"""
# Ids per DELETE, well under SQLite's limit on bound parameters.
_DELETE_CHUNK = 500
# Writes between two checkpoints (an append writes ~4 pages to the log: ~4 MB at most between).
CHECKPOINT_EVERY = 256

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    id: int
    run_id: uuid.UUID
    attempt: int
    seq: int
    kind: str
    routing_key: str
    body: bytes


@dataclass(frozen=True, slots=True)
class SpooledRun:
    run_id: uuid.UUID
    attempt: int
    state: RunState
    next_seq: int
    pid: int | None


class Spool:
    """One daemon's spool; open with `await Spool.open(path)`, close with `close()`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._writes = 0  # since the last checkpoint began
        self._checkpoint: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path) -> Spool:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, each statement its own transaction.
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # see `_wrote`
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint
        self._db.close()  # the last connection to close checkpoints what is left

    def _write(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        cursor = self._db.execute(sql, parameters)
        self._wrote()
        return cursor

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes >= CHECKPOINT_EVERY and self._checkpoint is None:
            self._writes = 0
            self._checkpoint = asyncio.create_task(
                asyncio.to_thread(passive_checkpoint, self.path), name="tama-spool-checkpoint"
            )
            self._checkpoint.add_done_callback(self._checkpointed)

    def _checkpointed(self, task: asyncio.Task[None]) -> None:
        self._checkpoint = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("spool checkpoint failed: %s", task.exception())

    async def claimed(self, run_id: uuid.UUID, attempt: int) -> bool:
        """Record a claimed attempt; False if this machine already knew it (a duplicate)."""
        cursor = self._write(
            "INSERT OR IGNORE INTO runs (run_id, attempt, state, next_seq, updated_at) "
            "VALUES (?, ?, 'claimed', 0, ?)",
            (str(run_id), attempt, time.time()),
        )
        return cursor.rowcount == 1

    async def forget(self, run_id: uuid.UUID, attempt: int) -> None:
        """Drop an attempt whose claim did not happen (refused, or the server was unreachable)."""
        self._write(
            "DELETE FROM runs WHERE run_id = ? AND attempt = ? AND state = 'claimed'",
            (str(run_id), attempt),
        )

    async def known(self, run_id: uuid.UUID, attempt: int) -> bool:
        cursor = self._db.execute(
            "SELECT 1 FROM runs WHERE run_id = ? AND attempt = ?", (str(run_id), attempt)
        )
        return cursor.fetchone() is not None

    async def set_process(self, run_id: uuid.UUID, attempt: int, pid: int | None) -> None:
        """Remember the run's process group, so a restarted daemon can end what it left behind."""
        self._write(
            "UPDATE runs SET pid = ?, updated_at = ? WHERE run_id = ? AND attempt = ?",
            (pid, time.time(), str(run_id), attempt),
        )

    async def append(self, event: RunEvent, routing_key: str) -> SpooledEvent:
        """Store an event and advance its run (the trigger), in one statement; ids grow in
        the order appends commit."""
        body = event.to_body()
        cursor = self._write(
            "INSERT INTO events (run_id, attempt, seq, kind, routing_key, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (str(event.run_id), event.attempt, event.seq, event.kind, routing_key, body),
        )
        assert cursor.lastrowid is not None
        return SpooledEvent(
            id=cursor.lastrowid,
            run_id=event.run_id,
            attempt=event.attempt,
            seq=event.seq,
            kind=event.kind,
            routing_key=routing_key,
            body=body,
        )

    async def pending(self, after_id: int = 0, limit: int = 256) -> list[SpooledEvent]:
        """Unconfirmed events with an id above `after_id`, oldest first."""
        rows = self._db.execute(
            "SELECT id, run_id, attempt, seq, kind, routing_key, body FROM events "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [
            SpooledEvent(
                id=row[0],
                run_id=uuid.UUID(row[1]),
                attempt=row[2],
                seq=row[3],
                kind=row[4],
                routing_key=row[5],
                body=bytes(row[6]),
            )
            for row in rows
        ]

    async def count(self) -> int:
        row = self._db.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    async def delete(self, ids: list[int]) -> None:
        """Forget confirmed events."""
        for start in range(0, len(ids), _DELETE_CHUNK):
            chunk = ids[start : start + _DELETE_CHUNK]
            marks = ",".join("?" * len(chunk))
            self._write(f"DELETE FROM events WHERE id IN ({marks})", chunk)

    async def unfinished(self) -> list[SpooledRun]:
        """Attempts claimed or running that never recorded a finish (the daemon died)."""
        rows = self._db.execute(
            "SELECT run_id, attempt, state, next_seq, pid FROM runs "
            "WHERE state != 'finished' ORDER BY updated_at"
        ).fetchall()
        return [
            SpooledRun(
                run_id=uuid.UUID(row[0]), attempt=row[1], state=row[2], next_seq=row[3], pid=row[4]
            )
            for row in rows
        ]

    async def prune(self, older_than_seconds: float) -> int:
        """Forget finished attempts older than this (kept meanwhile to drop duplicates)."""
        cursor = self._write(
            "DELETE FROM runs WHERE state = 'finished' AND updated_at < ?",
            (time.time() - older_than_seconds,),
        )
        return cursor.rowcount
