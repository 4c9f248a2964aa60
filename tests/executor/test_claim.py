"""HttpClaimer against the real server's claimRun: what each answer means for a delivery."""

from __future__ import annotations

import uuid

import pytest

from taskmachine.daemon.executor import ClaimUnavailable, HttpClaimer
from tests.conftest import RunningServer
from tests.machines.support import connect_machine, owner


async def test_a_claim_of_a_run_not_dispatched_to_this_machine_is_refused(
    machine_server: RunningServer,
) -> None:
    creds = await connect_machine(machine_server, await owner(machine_server))
    claimer = HttpClaimer.with_token(machine_server.url, creds["accessToken"])

    assert await claimer.claim(uuid.uuid4(), 1) is False


async def test_a_claim_that_cannot_be_made_raises_claim_unavailable(
    machine_server: RunningServer,
) -> None:
    # A refused token (the daemon's credentials refresh it) and a server that is not there.
    with pytest.raises(ClaimUnavailable):
        await HttpClaimer.with_token(machine_server.url, "not-a-token").claim(uuid.uuid4(), 1)
    with pytest.raises(ClaimUnavailable, match="cannot reach"):
        await HttpClaimer.with_token("http://127.0.0.1:9", "t").claim(uuid.uuid4(), 1)
