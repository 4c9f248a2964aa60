"""`tama daemon`: the loops of one connected machine, and how they start and stop.

    BrokerSession   connection as machine-<id>; control consumer       (broker.py, control.py)
    DetectionLoop   runtime detection, refreshed every interval          (detection_loop.py)
    HeartbeatLoop   a heartbeat every interval, nothing can delay it     (heartbeat.py)
    Executor        runs; `start(connection)` after each connect if it has it  (executor/)
    update task     install a release, report progress, exit 75          (updater.py)

`Daemon.run()` returns the process exit code (see exit_codes): 0 after a stop (Ctrl-C, SIGTERM,
`request_stop`), RESTART_FOR_UPDATE after an installed update, CREDENTIALS_REFUSED when the
broker refuses the machine. Stopping drains: the executor finishes its runs while heartbeats go
on (they renew the runs' leases), then the heartbeat and detection tasks end, and the broker
connection closes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aio_pika.abc import AbstractConnection

from taskmachine import __version__
from taskmachine.daemon import exit_codes
from taskmachine.daemon.broker import BrokerRefusedError, BrokerSession
from taskmachine.daemon.config import ConfigError, MachineConfig
from taskmachine.daemon.control import ControlConsumer
from taskmachine.daemon.detect import RuntimeDetector
from taskmachine.daemon.detection_loop import DetectionLoop
from taskmachine.daemon.executor import Executor
from taskmachine.daemon.heartbeat import HeartbeatLoop
from taskmachine.daemon.updater import UpdateError, install_release
from taskmachine.wire.control import UpdateRequest

log = logging.getLogger(__name__)

# How long a final heartbeat before exiting may take.
_FINAL_BEAT_SECONDS = 5.0


@runtime_checkable
class ConnectedExecutor(Protocol):
    """An executor that uses the broker itself (the jobs queue, run events)."""

    async def start(self, connection: AbstractConnection) -> None:
        """Called after every (re)connect."""
        ...

    async def close(self) -> None:
        """Called last, after drain."""
        ...


def _run_executor(cfg: MachineConfig) -> Executor:
    """The real executor: claims go over the broker, as this machine."""
    from taskmachine.daemon.executor import BrokerClaimer, RunExecutor

    assert cfg.machine_id is not None
    return RunExecutor(cfg, cfg.machine_id, BrokerClaimer(str(cfg.machine_id)))


@dataclass
class _Ending:
    code: int
    message: str


class Daemon:
    def __init__(
        self,
        cfg: MachineConfig,
        *,
        detector: RuntimeDetector | None = None,
        executor: Executor | None = None,
    ) -> None:
        if not cfg.connected or cfg.machine_id is None or cfg.amqp_url is None:
            raise ConfigError("this machine is not connected yet; run `tama setup` first")
        self.cfg = cfg
        self.machine_id = cfg.machine_id
        interval = cfg.heartbeat_interval_seconds
        self.executor: Executor = executor or _run_executor(cfg)
        self.detection = DetectionLoop(
            detector or RuntimeDetector(runtime_paths=cfg.runtime_paths), interval
        )
        self.control = ControlConsumer(executor=self.executor, on_update=self._on_update)
        self.session = BrokerSession(
            cfg.amqp_url,
            str(cfg.machine_id),
            on_control=self.control.handle,
            on_connected=self._on_connected,
            on_connection=self._start_executor,
        )
        self.heartbeat = HeartbeatLoop(
            machine_id=cfg.machine_id,
            execution_root=cfg.execution_root,
            interval=interval,
            session=self.session,
            detection=self.detection,
            executor=self.executor,
        )
        self._stop = asyncio.Event()
        self._ending: _Ending | None = None
        self._update_task: asyncio.Task[None] | None = None
        # Why the daemon ended (empty after a plain stop); set when run() returns.
        self.exit_message = ""

    def request_stop(self, code: int = exit_codes.OK, message: str = "") -> None:
        """End the daemon (drained); the first reason given wins."""
        if self._ending is None:
            self._ending = _Ending(code, message)
        self._stop.set()

    def _on_connected(self) -> None:
        self.heartbeat.nudge()

    async def _start_executor(self, connection: AbstractConnection) -> None:
        if isinstance(self.executor, ConnectedExecutor):
            await self.executor.start(connection)

    async def _on_update(self, request: UpdateRequest) -> None:
        if self._update_task is not None and not self._update_task.done():
            log.info("an update is already in progress; request %s ignored", request.request_id)
            return
        self._update_task = asyncio.create_task(self._update(request.target_version))

    async def _update(self, version: str | None) -> None:
        target = version or "the newest release"
        if version == __version__:
            log.info("already on %s; nothing to update", version)
            self.heartbeat.set_update_status(None)
            return
        self.heartbeat.set_update_status(f"updating to {target}")
        try:
            # Runs in flight finish first: an update must not kill agents' work.
            await self.executor.drain()
            result = await install_release(self.cfg, version)
        except UpdateError as exc:
            log.error("update to %s failed: %s", target, exc)
            # The machine takes work again on the version it has.
            resume = getattr(self.executor, "resume", None)
            if resume is not None:
                await resume()
            # 64 characters fit: the version first, then as much of the reason as fits.
            self.heartbeat.set_update_status(f"failed: {version or 'newest'}: {exc}")
            return
        if not result.changed:
            log.info("already on the newest release (%s)", result.installed)
            self.heartbeat.set_update_status(None)
            return
        self.heartbeat.set_update_status(f"installed {result.installed}; restarting")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FINAL_BEAT_SECONDS):
                await self.heartbeat.send_now()
        self.request_stop(
            exit_codes.RESTART_FOR_UPDATE,
            f"updated {result.previous} → {result.installed}; restarting",
        )

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; the exit code. Installs SIGINT/SIGTERM handlers when asked."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_stop)
        log.info(
            "tama %s daemon for machine %s: heartbeat every %g s, execution root %s",
            __version__,
            self.machine_id,
            self.cfg.heartbeat_interval_seconds,
            self.cfg.execution_root,
        )
        disconnect = asyncio.Event()
        detection = asyncio.create_task(self.detection.run(), name="tama-detection")
        heartbeat = asyncio.create_task(self.heartbeat.run(), name="tama-heartbeat")
        session = asyncio.create_task(self.session.run(disconnect), name="tama-broker")
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({session, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if session.done():
                error = session.exception()
                if isinstance(error, BrokerRefusedError):
                    self.request_stop(
                        exit_codes.CREDENTIALS_REFUSED,
                        f"{error}; run `tama setup` again to reconnect",
                    )
                elif error is not None:
                    raise error
            # Drain in order: runs finish while heartbeats still renew their leases, then the
            # loops end, and the connection closes last.
            await self.executor.drain()
        finally:
            self._stop.set()
            for task in (heartbeat, detection, self._update_task, stopping):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(
                heartbeat,
                detection,
                stopping,
                *([self._update_task] if self._update_task else []),
                return_exceptions=True,
            )
            if isinstance(self.executor, ConnectedExecutor):
                await self.executor.close()
            disconnect.set()
            await asyncio.gather(session, return_exceptions=True)
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        ending = self._ending or _Ending(exit_codes.OK, "")
        if ending.code == exit_codes.OK:
            log.info("daemon stopped")
        elif ending.message:
            log.warning("%s", ending.message)
        self.exit_message = ending.message
        return ending.code
