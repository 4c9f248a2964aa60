"""Runtime detection on its own task, so a slow probe never delays a heartbeat.

Every cycle asks the one `RuntimeDetector` of the daemon again; when nothing changed on disk it
only stats the tools, so refreshing each heartbeat interval is cheap. The heartbeat reads
`latest`, whatever the most recent finished detection found, and `latest_digest`, the digest a
heartbeat sends instead of an unchanged list.
"""

from __future__ import annotations

import asyncio
import logging

from taskmachine.daemon.detect import RuntimeDetector
from taskmachine.daemon.waits import jittered
from taskmachine.wire.messages import RuntimeReport, runtimes_digest

log = logging.getLogger(__name__)


class DetectionLoop:
    def __init__(self, detector: RuntimeDetector, interval: float) -> None:
        self._detector = detector
        self._interval = interval
        self.latest: list[RuntimeReport] | None = None
        self.latest_digest: str | None = None
        self.first_done = asyncio.Event()

    async def detect_once(self) -> list[RuntimeReport]:
        reports = [info.to_report() for info in await self._detector.detect()]
        if reports != self.latest:
            summary = ", ".join(
                f"{r.name} {r.version}" if r.available else f"{r.name} missing ({r.reason})"
                for r in reports
            )
            log.info("runtimes: %s", summary)
            self.latest_digest = runtimes_digest(reports)
        self.latest = reports
        self.first_done.set()
        return reports

    async def run(self) -> None:
        """Detect every interval until cancelled; a failed cycle keeps the previous result."""
        while True:
            try:
                await self.detect_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("runtime detection failed; keeping the previous result")
            await asyncio.sleep(jittered(self._interval))
