"""One CLI process under supervision: its own process group, limits, cancellation, cleanup.

The process starts in a new session (so it and everything it spawns share one process group that
we can signal as a whole), gets the prompt on stdin, and has its stdout handed over line by line.
It is stopped — SIGTERM to the group, SIGKILL after the grace — when:

    hard_timeout   it ran longer than the hard limit
    idle_timeout   it wrote nothing (stdout or stderr) for the idle limit
    cancel         the server cancelled the run
    drain          the daemon is stopping and the run did not finish in time

After the main process ends, whatever is left of its group is ended the same way, and only then
does `run()` return: a run is reported finished after its cleanup, never before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from taskmachine.daemon.adapters import Invocation, read_lines

log = logging.getLogger(__name__)

StopReason = Literal["hard_timeout", "idle_timeout", "cancel", "drain"]

# How much of the error output a failed run reports.
ERROR_TAIL_BYTES = 2048
# After the main process exits, how long leftovers of its group get between SIGTERM and SIGKILL.
LEFTOVER_GRACE = 2.0
# How long to wait for the output pipes to close once the process group is gone.
PIPE_CLOSE_SECONDS = 5.0


def watch_children_from_the_loop() -> bool:
    """Let the event loop itself learn when a child exits (Linux's pidfd), as Python 3.12 does by
    default. Python 3.11 waits for each child in a thread of its own: a thread started for every
    run, with the loop blocked until it runs. Call before the loop starts; False where the
    kernel (< 5.3) or a sandbox refuses pidfds, or on 3.12+ where nothing is to be done."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return True


class SpawnError(Exception):
    """The CLI could not be started (missing, not executable, bad folder)."""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    # The exit status; negative: killed by that signal.
    exit_code: int | None
    # Why we stopped it, or None if it ended by itself.
    stopped_by: StopReason | None
    # The last ERROR_TAIL_BYTES of its stderr, decoded leniently.
    stderr_tail: str


class _ActivityStream:
    """A stream wrapper that notes the time of every read that returned bytes."""

    def __init__(self, stream: asyncio.StreamReader, touch: Callable[[], None]) -> None:
        self._stream = stream
        self._touch = touch

    async def read(self, n: int = -1, /) -> bytes:
        data = await self._stream.read(n)
        if data:
            self._touch()
        return data


def _signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; False if no process is left in it."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Only possible if the group id was reused by someone else's processes: not ours.
        return False
    return True


_PROC = Path("/proc")


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in the group."""
    if not _signal_group(pgid, 0):
        return False
    if not _PROC.is_dir():
        return True
    # Orphaned zombies stay in the group until init reaps them, which may take long: skip them.
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


class Supervisor:
    def __init__(
        self,
        invocation: Invocation,
        *,
        hard_timeout: float,
        idle_timeout: float,
        grace: float,
        on_line: Callable[[bytes], Awaitable[None]],
        on_spawn: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._invocation = invocation
        self._hard = hard_timeout
        self._idle = idle_timeout
        self._grace = grace
        self._on_line = on_line
        self._on_spawn = on_spawn
        self._stop = asyncio.Event()
        self._stop_reason: StopReason | None = None
        self._last_activity = 0.0
        self._tail = bytearray()
        self.pid: int | None = None

    def stop(self, reason: StopReason) -> None:
        """Ask for the process to be stopped (SIGTERM, then SIGKILL after the grace)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    def _touch(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    async def run(self) -> ProcessResult:
        inv = self._invocation
        try:
            process = await asyncio.create_subprocess_exec(
                *inv.argv,
                cwd=inv.cwd,
                env=inv.env,
                stdin=asyncio.subprocess.PIPE
                if inv.stdin is not None
                else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno == errno.ENOENT:
                reason = "not found"
            raise SpawnError(f"cannot start {inv.argv[0]}: {reason}") from None
        self.pid = process.pid
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._touch()
        if self._on_spawn is not None:
            await self._on_spawn(process.pid)
        assert process.stdout is not None and process.stderr is not None
        io = [
            asyncio.create_task(self._write_stdin(process)),
            asyncio.create_task(self._read_stdout(process.stdout)),
            asyncio.create_task(self._read_stderr(process.stderr)),
        ]
        exited = asyncio.create_task(process.wait())
        try:
            stopped_by = await self._watch(exited, started)
            if stopped_by is not None:
                await self._terminate(process.pid, exited, self._grace)
            await exited
            # The main process is gone; its children may not be.
            if group_alive(process.pid):
                await self._terminate(process.pid, None, LEFTOVER_GRACE)
            await self._finish_io(io)
        finally:
            for task in (*io, exited):
                task.cancel()
            # Cleanup that cannot be skipped: never leave the group running behind us.
            _signal_group(process.pid, signal.SIGKILL)
            await asyncio.gather(*io, exited, return_exceptions=True)
        return ProcessResult(
            exit_code=process.returncode,
            stopped_by=stopped_by,
            stderr_tail=bytes(self._tail).decode("utf-8", errors="replace"),
        )

    async def _watch(self, exited: asyncio.Task[int], started: float) -> StopReason | None:
        """Wait for the process to end by itself, or for a reason to stop it."""
        loop = asyncio.get_running_loop()
        stop_wait = asyncio.create_task(self._stop.wait())
        try:
            while not exited.done():
                now = loop.time()
                hard_left = started + self._hard - now
                idle_left = self._last_activity + self._idle - now
                if hard_left <= 0:
                    return "hard_timeout"
                if idle_left <= 0:
                    return "idle_timeout"
                await asyncio.wait(
                    {exited, stop_wait},
                    timeout=min(hard_left, idle_left),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if self._stop.is_set() and not exited.done():
                    return self._stop_reason
            return None
        finally:
            stop_wait.cancel()

    async def _terminate(self, pgid: int, exited: asyncio.Task[int] | None, grace: float) -> None:
        """SIGTERM the group; SIGKILL it if the process (or the group) outlives the grace."""
        if not _signal_group(pgid, signal.SIGTERM):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if exited is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), grace)
        # The leader may be gone while others in its group linger: they get the rest of the grace.
        # Nothing signals a process group's end: poll.
        while loop.time() < deadline and group_alive(pgid):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if group_alive(pgid):
            log.info("process group %d outlived SIGTERM by %.1f s: SIGKILL", pgid, grace)
            _signal_group(pgid, signal.SIGKILL)

    async def _finish_io(self, io: list[asyncio.Task[None]]) -> None:
        # Pipes close when the last process holding them exits; one that escaped the group
        # (setsid) could hold them open for ever, so wait only so long.
        done, pending = await asyncio.wait(io, timeout=PIPE_CLOSE_SECONDS)
        if pending:
            log.warning("output pipes still open after the process group ended; closing them")
        for task in done:
            # Output handling errors (the spool) must surface, not vanish.
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _write_stdin(self, process: asyncio.subprocess.Process) -> None:
        if process.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(self._invocation.stdin or b"")
            await process.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.close()

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        async for line in read_lines(_ActivityStream(stream, self._touch)):
            await self._on_line(line)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(64 * 1024):
            self._touch()
            self._tail += chunk
            if len(self._tail) > ERROR_TAIL_BYTES:
                del self._tail[: len(self._tail) - ERROR_TAIL_BYTES]
