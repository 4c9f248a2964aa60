"""Stopping a component's background task."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has ended. The task's own cancellation is what was asked
    for and ends here; a cancellation of the caller while it waits goes on up (a bare
    `suppress(CancelledError)` would swallow it), as does an error the task had ended with."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
