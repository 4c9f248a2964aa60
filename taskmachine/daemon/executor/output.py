"""Live transcript batching: a line goes out at once when the stream was idle; under load lines
are coalesced into one RunOutput per 50 ms window, cut early at 64 KB (or 10,000 events, the
wire's limit). So a quiet agent's every step shows immediately, and a flood of output costs at
most twenty messages a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from taskmachine.wire.transcript import TranscriptEvent

WINDOW_SECONDS = 0.05
MAX_BATCH_BYTES = 64 * 1024
MAX_BATCH_EVENTS = 10_000

Send = Callable[[list[dict[str, Any]]], Awaitable[None]]


class OutputBatcher:
    def __init__(
        self,
        send: Send,
        *,
        window: float = WINDOW_SECONDS,
        max_bytes: int = MAX_BATCH_BYTES,
        max_events: int = MAX_BATCH_EVENTS,
    ) -> None:
        self._send = send
        self._window = window
        self._max_bytes = max_bytes
        self._max_events = max_events
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._last_flush = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._timed_flush: asyncio.Task[None] | None = None
        # Sends happen one at a time, in order, whoever triggers them (a line or the timer).
        self._lock = asyncio.Lock()
        self.batches = 0

    async def add(self, events: list[TranscriptEvent]) -> None:
        for event in events:
            self._pending.append(event.model_dump(mode="json"))
            self._pending_bytes += len(event.model_dump_json())
            if self._pending_bytes >= self._max_bytes or len(self._pending) >= self._max_events:
                await self.flush()
        if not self._pending or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_flush + self._window - loop.time()
        if wait <= 0:
            await self.flush()  # the stream was idle: this line goes now
        else:
            self._timer = loop.call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timed_flush = asyncio.create_task(self.flush())

    async def flush(self) -> None:
        """Send what is pending now (in order after any send in progress)."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._pending:
                return
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            self._last_flush = asyncio.get_running_loop().time()
            self.batches += 1
            await self._send(batch)

    async def close(self) -> None:
        """Send the rest; after this nothing is sent."""
        await self.flush()
        if self._timed_flush is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._timed_flush
