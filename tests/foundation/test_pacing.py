"""Background work steps aside for API requests: ingest slices, garbage collection; and an
operation leaves no garbage cycles behind for the collector."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from taskmachine import collector
from taskmachine.collector import PacedCollector
from taskmachine.foreground import Foreground
from taskmachine.metrics import Metrics
from tests.conftest import RunningServer


class _Cycle:
    """An object only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def restore_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()


async def test_quiet_returns_at_once_when_no_request_is_in_flight() -> None:
    foreground = Foreground()
    started = time.monotonic()
    await foreground.quiet(max_wait=5.0)
    assert time.monotonic() - started < 0.5


async def test_quiet_waits_for_the_last_request_to_end() -> None:
    foreground = Foreground()
    foreground.enter()
    foreground.enter()
    waiter = asyncio.create_task(foreground.quiet(max_wait=5.0))
    await asyncio.sleep(0.05)
    foreground.leave()
    await asyncio.sleep(0.05)
    assert not waiter.done()  # one request is still in flight
    foreground.leave()
    await asyncio.wait_for(waiter, 1.0)
    assert not foreground.busy


async def test_quiet_gives_up_after_its_bound_so_background_work_still_moves() -> None:
    foreground = Foreground()
    foreground.enter()
    started = time.monotonic()
    await foreground.quiet(max_wait=0.1)
    assert 0.09 <= time.monotonic() - started < 1.0
    assert foreground.busy


class _State:
    """What PacedCollector takes from the app state."""

    def __init__(self) -> None:
        self.foreground = Foreground()
        self.metrics = Metrics()


def _garbage_cycles(count: int) -> weakref.ref[_Cycle]:
    """`count` cycles dropped at once; a weak reference to one of them."""
    cycles = [_Cycle() for _ in range(count)]
    probe = weakref.ref(cycles[0])
    del cycles
    return probe


async def _freed(probe: weakref.ref[_Cycle], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if probe() is None:
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.mark.usefixtures("restore_gc")
async def test_the_collector_runs_when_no_request_is_in_flight() -> None:
    state = _State()
    pacer = PacedCollector()
    await pacer.start(state)  # type: ignore[arg-type]
    try:
        assert not gc.isenabled()  # CPython's own trigger is off
        probe = _garbage_cycles(collector.YOUNG_THRESHOLD + 1000)
        assert await _freed(probe, within=2.0)
        assert "taskmachine_gc_seconds_total" in state.metrics.render()
    finally:
        await pacer.stop()
    assert gc.isenabled()


@pytest.mark.usefixtures("restore_gc")
async def test_the_collector_waits_for_requests_until_garbage_piles_up() -> None:
    state = _State()
    pacer = PacedCollector()
    await pacer.start(state)  # type: ignore[arg-type]
    try:
        gc.collect()
        state.foreground.enter()  # a request in flight
        probe = _garbage_cycles(collector.YOUNG_THRESHOLD + 1000)
        assert not await _freed(probe, within=0.3)  # due, but held back for the request
        state.foreground.leave()
        assert await _freed(probe, within=2.0)

        state.foreground.enter()  # a server that never goes quiet still collects
        probe = _garbage_cycles(collector.FORCE_THRESHOLD + 1000)
        assert await _freed(probe, within=2.0)
        state.foreground.leave()
    finally:
        await pacer.stop()


FLEET = """query($w: ID!) { machines(workspaceId: $w, first: 50) { edges { node { id name } } } }
"""
BOARD = """query($w: ID!) { tasks(workspaceId: $w, first: 50) { edges { node {
  id title assignee { ... on User { name } } commentCount tags } } } }"""


@pytest.mark.usefixtures("restore_gc")
async def test_an_operation_leaves_no_loader_cycles_behind(server: RunningServer) -> None:
    token = await server.token_for("cycles@example.com")
    wid = (await server.ok('mutation { createWorkspace(input: {name: "C"}) { id } }', token=token))[
        "createWorkspace"
    ]["id"]
    for i in range(3):
        await server.ok(
            "mutation($w: ID!, $t: String!) { createTask(input: {workspaceId: $w, title: $t}) "
            "{ id } }",
            {"w": wid, "t": f"Task {i}"},
            token=token,
        )
    gc.collect()
    gc.disable()
    for _ in range(3):
        await server.ok(BOARD, {"w": wid}, token=token)
        await server.ok(FLEET, {"w": wid}, token=token)
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        kinds = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert "DataLoader" not in kinds
    assert "Loaders" not in kinds


async def test_a_document_parsed_before_is_reused_and_a_broken_one_still_fails(
    server: RunningServer,
) -> None:
    token = await server.token_for("parsed@example.com")
    broken = 'mutation { createProject(workspaceId: "x", name: '
    for _ in range(2):  # the second time must not come from a cache of the first
        body = await server.graphql(broken, token=token)
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "Syntax Error" in body["errors"][0]["message"]
    first = await server.ok("{ me { email } }", token=token)
    again = await server.ok("{ me { email } }", token=token)
    assert first == again == {"me": {"email": "parsed@example.com"}}
