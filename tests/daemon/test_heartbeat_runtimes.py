"""The daemon sends its runtime list only when it is news; other beats carry its digest."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from taskmachine.daemon.broker import BrokerSession
from taskmachine.daemon.detect import RuntimeDetector
from taskmachine.daemon.detection_loop import DetectionLoop
from taskmachine.daemon.executor import Executor
from taskmachine.daemon.heartbeat import HeartbeatLoop
from taskmachine.wire.messages import Heartbeat, RuntimeReport, runtimes_digest

MACHINE = uuid.UUID("5f0e3c1a-7b2d-4e8f-9a1b-2c3d4e5f6a7b")


class _Session:
    """The broker as the heartbeat sees it: confirms every publish unless told not to."""

    connected = True

    def __init__(self) -> None:
        self.confirm = True
        self.sent: list[Heartbeat] = []

    async def publish_event(self, routing_key: str, body: bytes, *, within: float) -> bool:
        if not self.confirm:
            return False
        self.sent.append(Heartbeat.parse(body))
        return True


@dataclass
class _Found:
    report: RuntimeReport

    def to_report(self) -> RuntimeReport:
        return self.report


class _Detector:
    def __init__(self) -> None:
        self.found: list[RuntimeReport] = [_report("2.1.329")]

    async def detect(self) -> list[_Found]:
        return [_Found(r) for r in self.found]


class _Executor:
    capacity = 2

    def active_runs(self) -> list[Any]:
        return []


def _report(version: str) -> RuntimeReport:
    return RuntimeReport(name="claude", provider="anthropic", version=version, available=True)


async def _loop(refresh: float = 60.0) -> tuple[HeartbeatLoop, _Session, _Detector, DetectionLoop]:
    session, detector = _Session(), _Detector()
    detection = DetectionLoop(cast(RuntimeDetector, detector), interval=10)
    await detection.detect_once()
    beats = HeartbeatLoop(
        machine_id=MACHINE,
        execution_root=Path("/work"),
        interval=10,
        session=cast(BrokerSession, session),
        detection=detection,
        executor=cast(Executor, _Executor()),
        runtimes_refresh=refresh,
    )
    return beats, session, detector, detection


async def test_the_list_goes_once_then_only_its_digest_until_it_changes() -> None:
    beats, session, detector, detection = await _loop()
    for _ in range(3):
        assert await beats.send_now()
    first, second, third = session.sent
    assert first.runtimes == [_report("2.1.329")]
    assert first.runtimes_digest == runtimes_digest([_report("2.1.329")])
    assert second.runtimes is None and third.runtimes is None
    assert second.runtimes_digest == third.runtimes_digest == first.runtimes_digest

    # claude updated: the next beat carries the new list and its digest.
    detector.found = [_report("2.1.400")]
    await detection.detect_once()
    await beats.send_now()
    await beats.send_now()
    changed, after = session.sent[3:]
    assert changed.runtimes == [_report("2.1.400")]
    assert changed.runtimes_digest == runtimes_digest([_report("2.1.400")])
    assert after.runtimes is None and after.runtimes_digest == changed.runtimes_digest


async def test_an_unconfirmed_list_is_sent_again() -> None:
    beats, session, _, _ = await _loop()
    session.confirm = False
    assert not await beats.send_now()
    session.confirm = True
    await beats.send_now()
    assert session.sent[0].runtimes == [_report("2.1.329")]


async def test_a_nudge_and_the_refresh_interval_resend_the_list() -> None:
    beats, session, _, _ = await _loop(refresh=0.3)
    await beats.send_now()
    await beats.send_now()
    beats.nudge()  # as after a reconnect
    await beats.send_now()
    await beats.send_now()
    await asyncio.sleep(0.35)
    await beats.send_now()
    assert [b.runtimes is not None for b in session.sent] == [True, False, True, False, True]
