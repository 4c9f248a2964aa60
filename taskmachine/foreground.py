"""People before machines: background work steps aside while API requests are in flight.

A server process runs its API and its bulk work (heartbeat ingest: thousands of deliveries a
second) on one event loop and, on SQLite, one database connection. Every slice of bulk work that
runs while a request is being answered adds to that request's time. Bulk work that can wait a
little (a heartbeat's effect is measured in seconds) asks `Foreground.quiet` before each slice:
it goes on at once when no request is in flight, else when the last one ends or after a bound,
so a constant stream of requests slows it down but never stops it.
"""

from __future__ import annotations

import asyncio
import contextlib

# Longest one step of background work is held back for requests; the caller's throughput under
# a constant stream of requests is at least one step per this long.
DEFAULT_MAX_WAIT_SECONDS = 0.05


class Foreground:
    def __init__(self) -> None:
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    def enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight <= 0:
            self._in_flight = 0
            self._idle.set()

    async def quiet(self, max_wait: float = DEFAULT_MAX_WAIT_SECONDS) -> None:
        """Return when no request is in flight, or after `max_wait` seconds at most."""
        if self._in_flight == 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max_wait)
