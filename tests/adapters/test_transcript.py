"""The normalized transcript: JSON round trips, bounds, and the failure codes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskmachine.wire.transcript import (
    MESSAGE_LIMIT,
    TOOL_INPUT_LIMIT,
    ErrorEvent,
    FailureCode,
    SessionEvent,
    SystemEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    TranscriptEvent,
    Usage,
    UsageEvent,
    dump_events,
    parse_event,
    parse_events,
    truncate,
)

EVENTS: list[TranscriptEvent] = [
    SessionEvent(session_id="s-1"),
    TextEvent(text="I will write the file."),
    ToolCallEvent(call_id="c1", name="Bash", input={"command": "echo hi > out.txt"}),
    ToolResultEvent(call_id="c1", output="", is_error=False),
    UsageEvent(
        input_tokens=10, output_tokens=2, cached_input_tokens=4, reasoning_tokens=1, cost_usd=0.01
    ),
    ErrorEvent(message="rate limited"),
    SystemEvent(message="permission denied"),
]


def test_events_round_trip_through_json() -> None:
    body = dump_events(EVENTS)
    assert parse_events(body) == EVENTS
    for event in EVENTS:
        assert parse_event(event.model_dump_json()) == event


def test_every_event_names_its_kind() -> None:
    kinds = [event.model_dump()["kind"] for event in EVENTS]
    assert kinds == ["session", "text", "tool_call", "tool_result", "usage", "error", "system"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind":"telepathy","text":"x"}',
        b'{"text":"no kind"}',
        b'{"kind":"tool_call","name":"Bash"}',
        b'{"kind":"usage","input_tokens":-1}',
        b"not json",
    ],
)
def test_malformed_events_are_rejected(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_event(body)


def test_unknown_fields_are_ignored_for_newer_senders() -> None:
    assert parse_event(b'{"kind":"text","text":"hi","colour":"blue"}') == TextEvent(text="hi")


def test_truncate_marks_what_it_cut() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("x" * 1000, 100)
    assert len(cut) == 100
    assert cut.startswith("xxx") and cut.endswith("[truncated 900 characters]")


def test_messages_and_tool_inputs_are_bounded() -> None:
    assert len(ErrorEvent(message="e" * 100_000).message) == MESSAGE_LIMIT
    big = ToolCallEvent(call_id="c", name="Write", input={"content": "y" * 100_000})
    assert set(big.input) == {"truncated_json"}
    assert len(big.input["truncated_json"]) == TOOL_INPUT_LIMIT


def test_usage_arithmetic() -> None:
    a = Usage(input_tokens=10, output_tokens=5, cost_usd=0.5)
    b = Usage(input_tokens=3, output_tokens=1)
    assert a.plus(b) == Usage(input_tokens=13, output_tokens=6, cost_usd=0.5)
    assert b.minus(a) == Usage()
    assert a.minus(Usage(input_tokens=4, cost_usd=0.2)).cost_usd == pytest.approx(0.3)
    assert UsageEvent(**a.model_dump()).usage() == a


def test_failure_codes() -> None:
    assert [code.value for code in FailureCode] == ["cli_error", "auth", "quota", "config"]
    assert [code.retryable for code in FailureCode] == [True, False, False, False]
    assert FailureCode("quota") is FailureCode.QUOTA
