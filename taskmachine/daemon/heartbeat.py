"""The heartbeat: one task that publishes the machine's state every interval, whatever else runs.

Beats keep their own cadence (deadlines on the monotonic clock, with jitter so a fleet spreads
out); a beat never waits for detection (it sends the latest result) nor for a connection (while
there is none the beat is skipped: a late heartbeat is worth nothing). Each publish has a timeout
below the interval, so a blocked broker (memory alarm) cannot push the next beat back either.
`nudge()` sends the next beat now: after (re)connecting, and when the update status changes.

The runtime list (2 KB with the models of two CLIs) goes only in beats where it is news: when it
changed since the last list the broker confirmed, in the first beat after (re)connecting or a
nudge, and at least every RUNTIMES_REFRESH_SECONDS (so a server that missed one, or lost its
database, has it again soon). Every other beat carries only the list's digest.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from taskmachine import __version__
from taskmachine.daemon.broker import BrokerSession
from taskmachine.daemon.detection_loop import DetectionLoop
from taskmachine.daemon.executor import Executor
from taskmachine.daemon.waits import jittered, wait_for_event
from taskmachine.wire.messages import Heartbeat, runtimes_digest
from taskmachine.wire.topology import heartbeat_routing_key

log = logging.getLogger(__name__)

# The most a publish may take, as a share of the interval.
_PUBLISH_SHARE = 0.8
_MAX_PUBLISH_SECONDS = 5.0
_STATUS_LIMIT = 64
# The longest a daemon goes without sending its full runtime list.
RUNTIMES_REFRESH_SECONDS = 60.0


def short_status(text: str) -> str:
    """An update status that fits the heartbeat's 64 characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _STATUS_LIMIT else flat[: _STATUS_LIMIT - 1] + "…"


class HeartbeatLoop:
    def __init__(
        self,
        *,
        machine_id: uuid.UUID,
        execution_root: Path,
        interval: float,
        session: BrokerSession,
        detection: DetectionLoop,
        executor: Executor,
        cli_version: str = __version__,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        runtimes_refresh: float = RUNTIMES_REFRESH_SECONDS,
    ) -> None:
        self._machine_id = machine_id
        self._routing_key = heartbeat_routing_key(str(machine_id))
        self._execution_root = str(execution_root)
        self._interval = interval
        self._session = session
        self._detection = detection
        self._executor = executor
        self._cli_version = cli_version
        self._clock = clock
        self._seq = 0
        self._runtimes_refresh = runtimes_refresh
        # The digest of the last runtime list the broker confirmed, and when (monotonic).
        self._listed_digest: str | None = None
        self._listed_at = 0.0
        self._nudged = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self.update_status: str | None = None
        self.sent = 0

    def set_update_status(self, status: str | None) -> None:
        """Report update progress in every heartbeat from now on, starting with one sent now."""
        self.update_status = short_status(status) if status else None
        self.nudge()

    def nudge(self) -> None:
        # A nudged beat (after a reconnect, say) carries the full list.
        self._listed_digest = None
        self._nudged.set()

    def build(self) -> Heartbeat:
        runtimes = list(self._detection.latest or [])
        digest = (
            self._detection.latest_digest
            if self._detection.latest is not None and self._detection.latest_digest is not None
            else runtimes_digest(runtimes)
        )
        listed = (
            digest == self._listed_digest
            and time.monotonic() - self._listed_at < self._runtimes_refresh
        )
        beat = Heartbeat(
            machine_id=self._machine_id,
            sent_at=self._clock(),
            seq=self._seq,
            cli_version=self._cli_version,
            execution_root=self._execution_root,
            capacity=self._executor.capacity,
            active_runs=self._executor.active_runs(),
            runtimes=None if listed else runtimes,
            runtimes_digest=digest,
            update_status=self.update_status,
        )
        self._seq += 1
        return beat

    async def send_now(self) -> bool:
        """Publish one heartbeat now; True if the broker confirmed it."""
        async with self._send_lock:
            timeout = min(self._interval * _PUBLISH_SHARE, _MAX_PUBLISH_SECONDS)
            if not self._session.connected:
                return False
            beat = self.build()
            sent = await self._session.publish_event(
                self._routing_key, beat.to_body(), within=timeout
            )
            if sent:
                self.sent += 1
                if beat.runtimes is not None:
                    self._listed_digest, self._listed_at = beat.runtimes_digest, time.monotonic()
            return sent

    async def run(self) -> None:
        """Beat until cancelled."""
        loop = asyncio.get_running_loop()
        # The first beat waits (briefly) for the first detection, so a starting daemon does not
        # tell the server that its runtimes vanished.
        await wait_for_event(self._detection.first_done, self._interval)
        next_at = loop.time()
        while True:
            await wait_for_event(self._nudged, next_at - loop.time())
            self._nudged.clear()
            try:
                if not await self.send_now():
                    log.debug("heartbeat skipped: not connected")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeat failed")
            # Keep the cadence; after a long stall start afresh instead of bursting.
            next_at = max(next_at + jittered(self._interval, 0.05), loop.time())
