"""The heartbeat on the wire: the server reads what the daemon sent; bad bodies fail clearly."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from taskmachine.wire.errors import WireError
from taskmachine.wire.messages import ActiveRun, Heartbeat, ModelReport, RuntimeReport

MACHINE = uuid.UUID("5f0e3c1a-7b2d-4e8f-9a1b-2c3d4e5f6a7b")
RUN = uuid.UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")


def _heartbeat() -> Heartbeat:
    return Heartbeat(
        machine_id=MACHINE,
        sent_at=datetime(2026, 11, 21, 6, 0, 0, tzinfo=UTC),
        seq=7,
        cli_version="0.1.0",
        execution_root="/home/me/.taskmachine/work",
        capacity=4,
        active_runs=[ActiveRun(run_id=RUN, attempt=2)],
        runtimes=[
            RuntimeReport(
                name="claude",
                provider="anthropic",
                path="/usr/local/bin/claude",
                version="2.1.329",
                models=[
                    ModelReport(id="opus", display_name="Opus", reasoning_levels=["low", "high"])
                ],
                available=True,
            ),
            RuntimeReport(name="codex", provider="openai", available=False, reason="not on PATH"),
        ],
    )


def _body(**changes: Any) -> bytes:
    data = json.loads(_heartbeat().to_body())
    data.update(changes)
    return json.dumps(data).encode()


def test_round_trip() -> None:
    sent = _heartbeat()
    received = Heartbeat.parse(sent.to_body())
    assert received == sent
    assert received.v == 1
    assert received.active_runs[0].run_id == RUN
    assert received.runtimes[1].reason == "not on PATH"


def test_unknown_fields_are_ignored_at_every_level() -> None:
    data = json.loads(_heartbeat().to_body())
    data["new_top_level"] = {"x": 1}
    data["runtimes"][0]["sandbox"] = "seatbelt"
    data["runtimes"][0]["models"][0]["context_window"] = 200000
    received = Heartbeat.parse(json.dumps(data).encode())
    assert received == _heartbeat()


def test_sent_at_is_normalised_to_utc() -> None:
    received = Heartbeat.parse(_body(sent_at="2026-11-21T08:00:00+02:00"))
    assert received.sent_at == datetime(2026, 11, 21, 6, 0, 0, tzinfo=UTC)
    assert received.sent_at.utcoffset() is not None
    assert received.sent_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "Heartbeat: body: Invalid JSON"),
        (b"\xff\xfe", "Heartbeat: body: Invalid JSON"),
        (b"[]", "Heartbeat: body: Input should be an object"),
        (_body(seq="7"), "Heartbeat: seq: Input should be a valid integer"),
        (_body(seq=-1), "Heartbeat: seq: Input should be greater than or equal to 0"),
        (_body(capacity=True), "Heartbeat: capacity: Input should be a valid integer"),
        (_body(machine_id="machine-1"), "Heartbeat: machine_id: Input should be a valid UUID"),
        (_body(sent_at="2026-11-21T06:00:00"), "Heartbeat: sent_at: must carry a time zone"),
        (_body(active_runs=[{"run_id": str(RUN), "attempt": 0}]), "active_runs.0.attempt"),
        (_body(runtimes=[{"name": "Claude Code", "provider": "x", "available": True}]), "name"),
        (
            _body(runtimes=[{"name": "claude", "provider": "anthropic"}]),
            "available: Field required",
        ),
    ],
)
def test_bad_bodies_raise_wire_error(body: bytes, expected: str) -> None:
    with pytest.raises(WireError) as caught:
        Heartbeat.parse(body)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_fields_are_all_counted_in_one_line() -> None:
    with pytest.raises(WireError) as caught:
        Heartbeat.parse(b"{}")
    assert str(caught.value).startswith("Heartbeat: machine_id: Field required (and ")


def test_wire_messages_import_only_stdlib_and_pydantic() -> None:
    script = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import taskmachine.wire.messages\n"
        "tops = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "extra = tops - set(sys.stdlib_module_names)\n"
        "print(','.join(sorted(t for t in extra if not t.startswith('_'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    third_party = set(done.stdout.strip().split(","))
    assert "taskmachine" in third_party  # the check saw the import
    allowed = {"taskmachine", "pydantic", "pydantic_core", "typing_extensions"}
    allowed |= {"annotated_types", "typing_inspection"}
    assert third_party <= allowed
