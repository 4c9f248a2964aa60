"""Fake CLIs (shell scripts standing in for `claude` / `codex`) for what the real ones will not do
on cue: crash mid-stream, print bytes that are not UTF-8, print a 5 MB line."""

from __future__ import annotations

import time
from pathlib import Path

from taskmachine.daemon.adapters import ClaudeAdapter, CodexAdapter
from taskmachine.wire.transcript import (
    TEXT_LIMIT,
    TOOL_OUTPUT_LIMIT,
    ErrorEvent,
    FailureCode,
    SessionEvent,
    SystemEvent,
    TextEvent,
    ToolResultEvent,
    UsageEvent,
)
from tests.adapters.runner import install_fake, make_spec, run_cli


async def test_claude_crash_mid_stream(tmp_path: Path) -> None:
    fake = install_fake(tmp_path, "claude_crash.sh", "claude")
    adapter = ClaudeAdapter(fake)
    run = await run_cli(adapter, make_spec(tmp_path, None, "fix it"))

    assert run.exit_code == -9
    assert run.events[0] == SessionEvent(session_id="fake-session-1")
    # The prompt reached the CLI on stdin.
    assert run.events[1] == TextEvent(text="Working on: fix it")
    # The half-written last line is reported, not fatal.
    assert isinstance(run.events[2], SystemEvent) and "unreadable output" in run.events[2].message
    assert run.result.session_id == "fake-session-1"
    assert not run.result.completed
    assert "Segmentation fault" in run.stderr
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is FailureCode.CLI_ERROR


async def test_codex_crash_after_an_error_line(tmp_path: Path) -> None:
    fake = install_fake(tmp_path, "codex_crash.sh", "codex")
    adapter = CodexAdapter(fake)
    run = await run_cli(adapter, make_spec(tmp_path, None))

    assert run.exit_code == 101
    assert [type(e) for e in run.events] == [SessionEvent, type(run.events[1]), ErrorEvent]
    assert run.result.error == "stream disconnected before completion"
    assert not run.result.completed
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is FailureCode.CLI_ERROR


async def test_non_utf8_output(tmp_path: Path) -> None:
    fake = install_fake(tmp_path, "codex_non_utf8.sh", "codex")
    run = await run_cli(CodexAdapter(fake), make_spec(tmp_path, None))

    assert run.exit_code == 0
    assert TextEvent(text="caf\ufffd \ufffd ok") in run.events
    junk = [e for e in run.of(SystemEvent) if "binary junk" in e.message]
    assert len(junk) == 1
    [result] = run.of(ToolResultEvent)
    assert result.output == "\ufffd\ufffd\n"
    assert run.result.completed and run.result.usage.input_tokens == 5


async def test_five_megabyte_lines(tmp_path: Path) -> None:
    fake = install_fake(tmp_path, "codex_huge_lines.sh", "codex")
    started = time.monotonic()
    run = await run_cli(CodexAdapter(fake), make_spec(tmp_path, None))
    elapsed = time.monotonic() - started

    assert run.exit_code == 0
    [text] = run.of(TextEvent)
    assert len(text.text) == TEXT_LIMIT and text.text.startswith("aaaa")
    [output] = run.of(ToolResultEvent)
    assert len(output.output) == TOOL_OUTPUT_LIMIT and output.output.startswith("bbbb")
    [garbage] = run.of(SystemEvent)
    assert garbage.message.startswith("unreadable output: cccc") and len(garbage.message) < 1000
    # Lines after the huge ones are still read.
    assert run.of(UsageEvent) == [UsageEvent(input_tokens=7, output_tokens=3)]
    assert run.result.completed
    assert elapsed < 10
