"""Waiting, the daemon's way: every wait ends early on stop, and retries back off with jitter.

Jitter keeps a fleet of daemons from retrying (or beating) in lockstep after a broker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import random


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True if it was set."""
    if event.is_set():
        return True
    if seconds <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


def jittered(seconds: float, fraction: float = 0.1) -> float:
    """`seconds` moved by up to ±fraction of itself, at random."""
    return seconds * (1.0 + random.uniform(-fraction, fraction))


class Backoff:
    """Exponential backoff with jitter: attempt n waits uniform(base, min(cap, base * 2**n))."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self._base = base
        self._cap = cap
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self._cap, self._base * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return random.uniform(self._base, ceiling)

    def reset(self) -> None:
        self._attempt = 0
