"""The stream parsers on lines shaped as the real CLIs print them, and on junk."""

from __future__ import annotations

import asyncio
import json

import pytest

from taskmachine.daemon.adapters import (
    ClaudeAdapter,
    ClaudeStreamParser,
    CodexAdapter,
    CodexStreamParser,
    ParsedResult,
    StreamParser,
    read_lines,
)
from taskmachine.wire.transcript import (
    TEXT_LIMIT,
    TOOL_OUTPUT_LIMIT,
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
)
from tests.adapters import recorded


def feed_all(parser: StreamParser, lines: list[str] | list[bytes]) -> list[TranscriptEvent]:
    events: list[TranscriptEvent] = []
    for line in lines:
        events.extend(parser.feed(line.encode() if isinstance(line, str) else line))
    return events


# -- Claude --------------------------------------------------------------------------------------


def test_claude_tool_run() -> None:
    parser = ClaudeStreamParser()
    events = feed_all(parser, recorded.CLAUDE_TOOL_RUN)
    assert events == [
        SessionEvent(session_id=recorded.CLAUDE_SESSION),
        ToolCallEvent(
            call_id="toolu_0001",
            name="Bash",
            input={"command": "echo hello > out.txt", "description": "Run the scripted command"},
        ),
        ToolResultEvent(call_id="toolu_0001", output="(Bash completed with no output)"),
        TextEvent(text="Wrote out.txt"),
        # 160 uncached + 80 cache reads: input_tokens counts both.
        UsageEvent(input_tokens=240, output_tokens=60, cached_input_tokens=80, cost_usd=0.001856),
    ]
    result = parser.result()
    assert result.session_id == recorded.CLAUDE_SESSION
    assert result.final_text == "Wrote out.txt"
    assert result.completed and result.error is None
    assert result.usage == Usage(
        input_tokens=240, output_tokens=60, cached_input_tokens=80, cost_usd=0.001856
    )
    assert result.session_usage == result.usage


def test_claude_resumed_run_reports_its_own_cost() -> None:
    # total_cost_usd covers the whole session: the run's cost is what it added.
    prior = Usage(input_tokens=120, output_tokens=30, cached_input_tokens=40, cost_usd=0.000928)
    parser = ClaudeStreamParser(prior_usage=prior)
    feed_all(parser, recorded.CLAUDE_TOOL_RUN)
    result = parser.result()
    assert result.usage.cost_usd == pytest.approx(0.000928)
    assert result.usage.input_tokens == 240
    assert result.session_usage is not None
    assert result.session_usage.input_tokens == 360
    assert result.session_usage.cost_usd == pytest.approx(0.001856)


def test_claude_permission_denial_is_a_system_line_and_an_error_result() -> None:
    events = feed_all(ClaudeStreamParser(), recorded.CLAUDE_DENIED)
    assert isinstance(events[0], SystemEvent)
    assert events[0].message.startswith("permission denied for Bash: Output redirection")
    assert isinstance(events[1], ToolResultEvent) and events[1].is_error


def test_claude_auth_failure() -> None:
    parser = ClaudeStreamParser()
    events = feed_all(parser, recorded.CLAUDE_AUTH_FAILURE)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    # The synthetic assistant line and the result say the same thing: reported once.
    assert [e.message for e in errors] == [
        "Failed to authenticate. API Error: 401 invalid x-api-key"
    ]
    assert not [e for e in events if isinstance(e, TextEvent)]
    result = parser.result()
    assert not result.completed
    assert result.api_status == 401 and result.error_kind == "authentication_failed"
    assert ClaudeAdapter("claude").classify_failure(1, "", result) is FailureCode.AUTH


def test_claude_unknown_session() -> None:
    parser = ClaudeStreamParser()
    feed_all(parser, recorded.CLAUDE_UNKNOWN_SESSION)
    result = parser.result()
    assert (
        result.error
        == "No conversation found with session ID: 3068fd09-6f6d-42be-befb-03e1e959d539"
    )
    assert ClaudeAdapter("claude").classify_failure(1, "", result) is FailureCode.CONFIG


@pytest.mark.parametrize(
    ("stderr", "result", "expected"),
    [
        ("", ParsedResult(api_status=429, error_kind="rate_limit"), FailureCode.QUOTA),
        (
            "",
            ParsedResult(error="Credit balance is too low", error_kind="billing_error"),
            FailureCode.QUOTA,
        ),
        ("", ParsedResult(api_status=404, error_kind="model_not_found"), FailureCode.CONFIG),
        ("", ParsedResult(error="Not logged in · Please run /login"), FailureCode.AUTH),
        ("error: unknown option '--bogus'\n", ParsedResult(), FailureCode.CONFIG),
        (
            "--dangerously-skip-permissions cannot be used with root/sudo privileges\n",
            ParsedResult(),
            FailureCode.CONFIG,
        ),
        ("", ParsedResult(api_status=500, error_kind="server_error"), FailureCode.CLI_ERROR),
        ("Segmentation fault\n", ParsedResult(), FailureCode.CLI_ERROR),
    ],
)
def test_claude_classification(stderr: str, result: ParsedResult, expected: FailureCode) -> None:
    assert ClaudeAdapter("claude").classify_failure(1, stderr, result) is expected


# -- Codex ---------------------------------------------------------------------------------------


def test_codex_tool_run() -> None:
    parser = CodexStreamParser()
    events = feed_all(parser, recorded.CODEX_TOOL_RUN)
    command = "/bin/bash -lc 'echo hello > out.txt'"
    assert events == [
        SessionEvent(session_id=recorded.CODEX_THREAD),
        ToolCallEvent(call_id="item_0", name="shell", input={"command": command}),
        ToolResultEvent(call_id="item_0", output="", is_error=False),
        TextEvent(text="First done"),
        UsageEvent(input_tokens=240, output_tokens=60, cached_input_tokens=80, reasoning_tokens=14),
    ]
    result = parser.result()
    assert result.session_id == recorded.CODEX_THREAD
    assert result.final_text == "First done"
    assert result.completed
    assert result.usage.cost_usd is None


def test_codex_resumed_run_reports_its_own_tokens() -> None:
    prior = Usage(input_tokens=480, output_tokens=120, cached_input_tokens=160, reasoning_tokens=28)
    parser = CodexStreamParser(prior_usage=prior)
    events = feed_all(parser, [recorded.CODEX_RESUMED_USAGE])
    assert events == [
        UsageEvent(input_tokens=120, output_tokens=30, cached_input_tokens=40, reasoning_tokens=7)
    ]
    assert parser.result().session_usage == Usage(
        input_tokens=600, output_tokens=150, cached_input_tokens=200, reasoning_tokens=35
    )


def test_codex_only_passes_prior_usage_to_a_resumed_run(tmp_path: object) -> None:
    from taskmachine.daemon.adapters import AdapterRunSpec

    prior = Usage(input_tokens=480)
    fresh = AdapterRunSpec(prompt="x", cwd="/tmp", prior_usage=prior)
    resumed = fresh.model_copy(update={"resume_session_id": recorded.CODEX_THREAD})
    for spec, expected in ((fresh, 600), (resumed, 120)):
        parser = CodexAdapter("codex").new_parser(spec)
        parser.feed(recorded.CODEX_RESUMED_USAGE.encode())
        assert parser.result().usage.input_tokens == expected


def test_codex_notices_and_failed_commands() -> None:
    events = feed_all(CodexStreamParser(), recorded.CODEX_NOTICES)
    assert isinstance(events[0], SystemEvent) and "Model metadata" in events[0].message
    # A completed item with no started line still yields its call, then the result.
    assert isinstance(events[1], ToolCallEvent) and events[1].call_id == "item_1"
    assert isinstance(events[2], ToolResultEvent) and events[2].is_error
    assert "Read-only file system" in events[2].output


def test_codex_auth_failure() -> None:
    parser = CodexStreamParser()
    events = feed_all(parser, recorded.CODEX_AUTH_FAILURE)
    # `error` then `turn.failed` with the same message: reported once.
    assert len([e for e in events if isinstance(e, ErrorEvent)]) == 1
    result = parser.result()
    assert not result.completed
    assert CodexAdapter("codex").classify_failure(1, "", result) is FailureCode.AUTH


def test_codex_reconnecting_is_not_the_error() -> None:
    parser = CodexStreamParser()
    events = feed_all(parser, ['{"type":"error","message":"Reconnecting... 1/5"}'])
    assert isinstance(events[0], SystemEvent)
    assert parser.result().error is None


@pytest.mark.parametrize(
    ("exit_code", "stderr", "error", "expected"),
    [
        (1, "", "Quota exceeded. Check your plan and billing details.", FailureCode.QUOTA),
        (1, "", "exceeded retry limit, last status: 429 Too Many Requests", FailureCode.QUOTA),
        (1, "", "Missing environment variable: `K`.", FailureCode.AUTH),
        (1, "", "unexpected status 403 Forbidden: nope", FailureCode.AUTH),
        (
            1,
            "",
            "The model `x` does not exist or you do not have access to it.",
            FailureCode.CONFIG,
        ),
        (2, "error: unexpected argument '--bogus' found\n", None, FailureCode.CONFIG),
        (1, "Error loading config.toml: unknown variant `bogus`\n", None, FailureCode.CONFIG),
        (
            1,
            "Error: thread/resume: no rollout found for thread id 01a1\n",
            None,
            FailureCode.CONFIG,
        ),
        (1, "", "Connection failed: error sending request", FailureCode.CLI_ERROR),
        (1, "", "We're currently experiencing high demand", FailureCode.CLI_ERROR),
        # A port number that happens to contain 401 is not an auth failure.
        (1, "", "stream disconnected: http://127.0.0.1:44010/v1", FailureCode.CLI_ERROR),
    ],
)
def test_codex_classification(
    exit_code: int, stderr: str, error: str | None, expected: FailureCode
) -> None:
    result = ParsedResult(error=error)
    assert CodexAdapter("codex").classify_failure(exit_code, stderr, result) is expected


# -- junk never breaks a parser ------------------------------------------------------------------


@pytest.mark.parametrize("parser_type", [ClaudeStreamParser, CodexStreamParser])
@pytest.mark.parametrize(
    "line",
    [
        b"not json at all",
        b"\xff\xfe\x00garbage\x80",
        b"[1, 2, 3]",
        b'"a string"',
        b'{"type":"assistant","message":{"content":"oops"}}',
        b'{"type":"assistant","message":{"content":[{"type":"tool_use","input":5}]}}',
        b'{"type":"item.completed"}',
        b'{"type":"item.completed","item":[]}',
        b'{"type":"result","usage":"none","total_cost_usd":"free"}',
        b'{"type":"turn.completed","usage":{"input_tokens":-5,"output_tokens":"x"}}',
        b'{"type":"user","message":{"content":[{"type":"tool_result","content":[{"type":"image"}]}]}}',
        b'{"type":"brand_new_event","payload":{}}',
        b"{" * 10_000,
    ],
)
def test_junk_lines_never_raise(parser_type: type[StreamParser], line: bytes) -> None:
    parser = parser_type()
    events = parser.feed(line)
    for event in events:
        # Every event stays JSON-serializable and bounded.
        assert len(event.model_dump_json()) < 20_000
    parser.result()


def test_non_utf8_bytes_are_replaced_not_fatal() -> None:
    line = (
        '{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"caf\u00e9 ok"}}'
    )
    raw = line.encode().replace("é".encode(), b"\xe9\xff")
    events = CodexStreamParser().feed(raw)
    assert events == [TextEvent(text="caf\ufffd\ufffd ok")]


def test_blank_lines_are_ignored() -> None:
    assert ClaudeStreamParser().feed(b"   \r\n") == []


def test_a_huge_text_is_kept_bounded() -> None:
    text = "a" * (5 * 1024 * 1024)
    line = json.dumps(
        {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": text}}
    )
    parser = CodexStreamParser()
    [event] = parser.feed(line.encode())
    assert isinstance(event, TextEvent)
    assert len(event.text) == TEXT_LIMIT
    assert event.text.endswith("characters]")


def test_a_huge_tool_output_is_kept_bounded() -> None:
    output = "line\n" * 1_000_000
    line = json.dumps(
        {
            "type": "user",
            "message": {
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": output}]
            },
        }
    )
    [event] = ClaudeStreamParser().feed(line.encode())
    assert isinstance(event, ToolResultEvent)
    assert len(event.output) == TOOL_OUTPUT_LIMIT
    assert "truncated" in event.output[-60:]


# -- reading lines -------------------------------------------------------------------------------


async def test_read_lines_cuts_overlong_lines_and_keeps_going() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"first\n" + b"x" * 100_000 + b"\nthird\nno newline at end")
    reader.feed_eof()
    lines = [line async for line in read_lines(reader, max_line_bytes=1000, chunk_size=4096)]
    assert lines == [b"first", b"x" * 1000, b"third", b"no newline at end"]
