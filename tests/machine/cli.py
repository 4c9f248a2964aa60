"""Run `tama` as a subprocess without blocking the event loop (the test server runs in it)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from tests.daemon.support import REPO


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


def tama_argv(*args: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "taskmachine.cli", *args]


async def start_tama(*args: str, python: str = sys.executable) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1", COLUMNS="200")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return await asyncio.create_subprocess_exec(
        *tama_argv(*args, python=python),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=REPO.parent,
    )


async def finish(process: asyncio.subprocess.Process, within: float = 60.0) -> Done:
    async with asyncio.timeout(within):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Done(process.returncode, stdout.decode(), stderr.decode())


async def tama(*args: str, within: float = 60.0, python: str = sys.executable) -> Done:
    return await finish(await start_tama(*args, python=python), within)
