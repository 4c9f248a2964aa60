"""Stopping a background task: it ends, and a cancellation aimed at the caller is not lost."""

from __future__ import annotations

import asyncio

import pytest

from taskmachine.background import stop_task


async def _forever(started: asyncio.Event) -> None:
    started.set()
    await asyncio.sleep(3600)


async def test_a_running_task_is_cancelled_and_waited_for() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(_forever(started))
    await started.wait()
    await stop_task(task)
    assert task.cancelled()
    await stop_task(None)  # nothing to stop


async def test_the_caller_cancelled_while_it_waits_is_still_cancelled() -> None:
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await release.wait()  # cleanup that takes a while

    background = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(stop_task(background))
    await asyncio.sleep(0.01)
    stopping.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await asyncio.sleep(0)
    assert background.done()


async def test_an_error_the_task_ended_with_is_raised() -> None:
    async def broken() -> None:
        raise RuntimeError("the loop broke")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="the loop broke"):
        await stop_task(task)
