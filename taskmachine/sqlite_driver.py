"""SQLAlchemy's aiosqlite adapter, with one trip to aiosqlite's thread per statement.

The stock adapter's cursor takes four trips for a statement (open a cursor, execute, fetch,
close), each a hand-over to aiosqlite's worker thread and back to the event loop. Under load
those hand-overs, not SQLite, are what the one connection is held for: in bench/dispatch.py's
throughput phase, SQLite itself ran ~3 s while the connection was held ~28 s across 70,000 trips
(~0.36 ms each). This cursor sends one function to the same thread that opens a cursor, executes,
fetches every row, reads the row count and closes, and keeps the results on the event loop side,
as the stock cursor does after its fetch. Server-side cursors are left as they were (nothing here
streams results).

It reaches into aiosqlite's `Connection._execute` (queue a function for its thread) and `_conn`
(the sqlite3 connection, only touched from that thread): private API of the pinned aiosqlite,
covered by the whole suite on SQLite.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

# What one statement leaves behind: description, rows, rowcount, lastrowid.
_Outcome = tuple[Any, list[Any], int, int | None]


def _statement(
    connection: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """In aiosqlite's thread: the whole statement (`many`: once per parameter set)."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        # Read after the fetch: for a statement with RETURNING it counts the rows fetched.
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


async def _in_thread(connection: Any, operation: str, parameters: Any, many: bool) -> _Outcome:
    """The statement as one item of aiosqlite's queue."""
    aio: aiosqlite.Connection = connection
    run: Callable[..., Awaitable[_Outcome]] = aio._execute  # untyped in aiosqlite
    return await run(_statement, aio._conn, operation, parameters, many)


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statement is one trip to aiosqlite's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount", "arraysize")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No aiosqlite cursor is opened here (the stock cursor opens one: a trip).
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self.arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    async def _async_soft_close(self) -> None:
        return  # closed in the thread already; the description stays readable

    def _keep(self, outcome: _Outcome) -> None:
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            self._keep(await _in_thread(self._connection, operation, parameters, False))

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            self._keep(await _in_thread(self._connection, operation, seq_of_parameters, True))

    def nextset(self) -> None:
        raise NotImplementedError("sqlite3 has no result sets after the first")

    def setinputsizes(self, *inputsizes: Any) -> None:
        return


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls: type[AsyncAdapt_aiosqlite_cursor] = OneTripCursor

    def rollback(self) -> None:
        # The pool rolls back every connection it is given back, after a commit too. With no
        # transaction open there is nothing to undo, and asking the thread would be a trip.
        # (`in_transaction` only reads SQLite's autocommit flag; nothing runs on the connection
        # while it is being returned.)
        raw: sqlite3.Connection | None = self._connection._connection
        if raw is not None and not raw.in_transaction:
            return
        super().rollback()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module handed to `create_async_engine(module=…)` for SQLite."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        stock = super().connect(*arg, **kw)
        return OneTripConnection(self, stock._connection)
