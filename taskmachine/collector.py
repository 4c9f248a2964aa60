"""Cyclic garbage collection at moments when no API request is waiting.

CPython's collector runs whenever enough objects have been allocated, wherever the program is.
Under heartbeat load that was a young-generation pass every half second (10–40 ms with the loop
stopped, on a busy 2-core box), a middle one every ten seconds (~200 ms) and a full one now and
then (~300 ms): the tail of the API's latency (bench/heartbeats.py). This component turns the
automatic trigger off and runs the same passes from a task, when `Foreground` says no request is
in flight. A pass still runs while requests are in flight once garbage has piled up well past
the usual trigger, so a server that never goes quiet cannot grow without bound.

Middle passes come more often than CPython's default (every 5 young passes, not 20), so each one
has less to look at and fits between two requests.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from taskmachine.background import stop_task
from taskmachine.foreground import Foreground
from taskmachine.metrics import Metrics
from taskmachine.schema.state import AppState

log = logging.getLogger("taskmachine.collector")

# Net allocations of tracked objects that make a young pass due (as `_tune_gc` sets it).
YOUNG_THRESHOLD = 20_000
# ... and that make it run even while requests are in flight.
FORCE_THRESHOLD = 4 * YOUNG_THRESHOLD
YOUNG_PER_MIDDLE = 5
MIDDLE_PER_FULL = 20
# How often a due pass is looked for: 20 wake-ups a second on an idle server, not 100.
TICK_SECONDS = 0.05


class PacedCollector:
    """A server component: `start(state)` takes over collection, `stop()` gives it back."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._was_enabled = True
        self._metrics: Metrics | None = None

    async def start(self, state: AppState) -> None:
        self._metrics = state.metrics
        self._metrics.describe(
            "taskmachine_gc_seconds_total", "counter", "Time the loop spent collecting garbage."
        )
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._task = asyncio.create_task(self._run(state.foreground), name="paced-collector")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._was_enabled:
            gc.enable()

    async def _run(self, foreground: Foreground) -> None:
        young = middle = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            pending = gc.get_count()[0]
            if pending < YOUNG_THRESHOLD or (foreground.busy and pending < FORCE_THRESHOLD):
                continue
            generation = 0
            young += 1
            if young >= YOUNG_PER_MIDDLE:
                young, generation = 0, 1
                middle += 1
                if middle >= MIDDLE_PER_FULL:
                    middle, generation = 0, 2
            self.collect(generation)

    def collect(self, generation: int) -> None:
        started = time.perf_counter()
        gc.collect(generation)
        if self._metrics is not None:
            self._metrics.inc(
                "taskmachine_gc_seconds_total",
                time.perf_counter() - started,
                generation=str(generation),
            )
