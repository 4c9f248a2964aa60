"""What the daemon's loops need from an executor, and the stand-in with no runs.

The heartbeat asks for `capacity` and `active_runs`; the control consumer hands over
cancellations and claim answers; the daemon drains on shutdown and before an update.
`IdleExecutor` never has runs (a daemon that should not take jobs, and tests of the loops
themselves).
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from taskmachine.wire.control import ClaimAnswer
from taskmachine.wire.messages import ActiveRun

log = logging.getLogger(__name__)


class Executor(Protocol):
    @property
    def capacity(self) -> int:
        """How many runs this machine takes at once (the heartbeat's `capacity`)."""
        ...

    def active_runs(self) -> list[ActiveRun]:
        """The runs executing now (heartbeat `active_runs`; the server renews their leases)."""
        ...

    async def cancel(self, run_id: uuid.UUID, attempt: int) -> bool:
        """Stop a run (SIGTERM to its group, SIGKILL after the grace); False if it is not here."""
        ...

    async def drain(self) -> None:
        """Stop taking runs and wait for the running ones to finish their cleanup."""
        ...

    def claim_answered(self, answer: ClaimAnswer) -> None:
        """The server's answer to a claim this executor sent over the broker."""
        ...


class IdleExecutor:
    """An executor with no runs: capacity from the config, nothing to cancel or drain."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    def active_runs(self) -> list[ActiveRun]:
        return []

    async def cancel(self, run_id: uuid.UUID, attempt: int) -> bool:
        log.info("cancel of run %s attempt %d: no such run on this machine", run_id, attempt)
        return False

    async def drain(self) -> None:
        return None

    def claim_answered(self, answer: ClaimAnswer) -> None:
        log.info("answer to claim %s: this machine sent no claims", answer.claim_id)
