"""The real `claude` binary against the mock model server: it runs the scripted shell command for
real in the run folder, answers, resumes its session, and fails the way we classify."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from taskmachine.daemon.adapters import ClaudeAdapter
from taskmachine.wire.transcript import (
    ErrorEvent,
    FailureCode,
    SessionEvent,
    SystemEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    UsageEvent,
)
from tests.adapters.runner import API_KEY, exists, install_fake, make_spec, run_cli
from tests.mockmodel.server import (
    CACHED_INPUT_TOKENS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    Answer,
    Fail,
    MockModelServer,
    ShellCall,
)

MODEL = "claude-opus-5-5"


async def test_tool_call_then_answer_then_resume(
    tmp_path: Path, claude_bin: Path, mock_model: MockModelServer
) -> None:
    adapter = ClaudeAdapter(claude_bin)
    mock_model.script(ShellCall("echo hello > out.txt"), Answer("I wrote out.txt."))
    spec = make_spec(
        tmp_path, mock_model, "Write hello to out.txt", model=MODEL, reasoning_level="high"
    )

    first = await run_cli(adapter, spec)

    assert first.exit_code == 0, first.stderr
    assert (spec.cwd / "out.txt").read_text() == "hello\n"
    [call] = first.of(ToolCallEvent)
    assert call.name == "Bash" and call.input["command"] == "echo hello > out.txt"
    [tool_result] = first.of(ToolResultEvent)
    assert tool_result.call_id == call.call_id and not tool_result.is_error
    assert first.of(TextEvent)[-1].text == "I wrote out.txt."
    [usage] = first.of(UsageEvent)
    assert usage.input_tokens == 2 * INPUT_TOKENS
    assert usage.cached_input_tokens == 2 * CACHED_INPUT_TOKENS
    assert usage.output_tokens == 2 * OUTPUT_TOKENS
    assert usage.cost_usd is not None and usage.cost_usd > 0
    session_id = first.result.session_id
    assert session_id is not None and uuid.UUID(session_id)
    assert first.of(SessionEvent)[0].session_id == session_id
    assert first.result.completed and first.result.final_text == "I wrote out.txt."
    assert not first.of(ErrorEvent)
    # What the CLI sent: our key, the model and effort asked for, the prompt; then the tool
    # result on the second request.
    main = mock_model.main_requests
    assert len(main) == 2
    assert main[0].headers["x-api-key"] == API_KEY
    assert main[0].body["model"] == MODEL
    assert main[0].body["output_config"]["effort"] == "high"
    assert main[0].mentions("Write hello to out.txt")
    assert main[1].mentions(call.call_id)

    mock_model.clear()
    mock_model.script(Answer("Second turn done."))
    resumed_spec = spec.model_copy(
        update={
            "prompt": "Now say you are done",
            "resume_session_id": session_id,
            "prior_usage": first.result.session_usage,
        }
    )
    second = await run_cli(adapter, resumed_spec)

    assert second.exit_code == 0, second.stderr
    assert second.result.session_id == session_id
    assert second.result.final_text == "Second turn done."
    [request] = mock_model.main_requests
    # The resumed session replays the first turn: prompt, tool call and answer.
    assert request.mentions("Write hello to out.txt")
    assert request.mentions("echo hello > out.txt")
    assert request.mentions("I wrote out.txt.")
    assert request.mentions("Now say you are done")
    # This run's usage is its own; the session's totals add up.
    assert second.result.usage.input_tokens == INPUT_TOKENS
    assert second.result.session_usage is not None
    assert second.result.session_usage.input_tokens == 3 * INPUT_TOKENS
    assert second.result.usage.cost_usd == pytest.approx(usage.cost_usd / 2)


@pytest.mark.parametrize(
    ("permission", "allowed"), [("safe", False), ("full_auto", True)], ids=["safe", "full_auto"]
)
async def test_permission_decides_what_runs(
    tmp_path: Path, claude_bin: Path, mock_model: MockModelServer, permission: Any, allowed: bool
) -> None:
    # Safe mode lets Claude edit the run folder but not run arbitrary programs or write outside;
    # full_auto (as root here, so with IS_SANDBOX=1) runs anything.
    outside = tmp_path / "outside.txt"
    mock_model.script(
        ShellCall("python3 -c \"open('py.txt', 'w').write('x')\""),
        ShellCall(f"echo x > {outside}"),
        Answer("Tried."),
    )
    spec = make_spec(tmp_path, mock_model, permission=permission)
    run = await run_cli(ClaudeAdapter(claude_bin), spec)

    assert run.exit_code == 0, run.stderr
    assert exists(spec.cwd / "py.txt") is allowed
    assert exists(outside) is allowed
    denials = [e for e in run.of(SystemEvent) if e.message.startswith("permission denied")]
    assert len(denials) == (0 if allowed else 2)
    assert all(r.is_error is not allowed for r in run.of(ToolResultEvent))


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "not-allowed"])
async def test_allowed_commands_run_in_safe_mode(
    tmp_path: Path, claude_bin: Path, mock_model: MockModelServer, allowed: bool
) -> None:
    # The agent calls `tama` to reach the server; safe mode pre-approves it when told to.
    tama = install_fake(tmp_path, "tama.sh", "tama")
    mock_model.script(ShellCall("tama tasks list"), Answer("Listed."))
    spec = make_spec(
        tmp_path,
        mock_model,
        allowed_commands=["tama"] if allowed else [],
        extra_env={"TAMA_API_URL": mock_model.url},
    )
    assert spec.base_env is not None
    path = f"{tama.parent}{os.pathsep}{spec.base_env['PATH']}"
    spec = spec.model_copy(update={"base_env": {**spec.base_env, "PATH": path}})
    run = await run_cli(ClaudeAdapter(claude_bin), spec)

    assert run.exit_code == 0, run.stderr
    [result] = run.of(ToolResultEvent)
    assert ("tama: server answered 200" in result.output) is allowed
    assert result.is_error is not allowed


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        (Fail(401), FailureCode.AUTH),
        (Fail(403), FailureCode.AUTH),
        (Fail(429), FailureCode.QUOTA),
        (
            Fail(400, "Your credit balance is too low to access the Anthropic API."),
            FailureCode.QUOTA,
        ),
        (Fail(404), FailureCode.CONFIG),
        (Fail(500), FailureCode.CLI_ERROR),
        (Fail(529), FailureCode.CLI_ERROR),
    ],
    ids=["401", "403", "429", "credit", "404-model", "500", "529"],
)
async def test_model_server_failures_are_classified(
    tmp_path: Path,
    claude_bin: Path,
    mock_model: MockModelServer,
    turn: Fail,
    expected: FailureCode,
) -> None:
    mock_model.script(turn)
    adapter = ClaudeAdapter(claude_bin)
    run = await run_cli(adapter, make_spec(tmp_path, mock_model))

    assert run.exit_code != 0
    assert not run.result.completed
    assert run.result.error
    assert run.of(ErrorEvent)
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is expected


async def test_unknown_session_is_a_config_failure(
    tmp_path: Path, claude_bin: Path, mock_model: MockModelServer
) -> None:
    adapter = ClaudeAdapter(claude_bin)
    spec = make_spec(tmp_path, mock_model, resume_session_id=str(uuid.uuid4()))
    run = await run_cli(adapter, spec)
    assert run.exit_code != 0
    assert "No conversation found" in (run.result.error or "")
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is FailureCode.CONFIG
    assert mock_model.requests == []


async def test_bypass_needs_is_sandbox_only_as_root(
    tmp_path: Path, claude_bin: Path, mock_model: MockModelServer
) -> None:
    # Build as if the daemon were not root: no IS_SANDBOX. Claude refuses that as root (a
    # config failure) and accepts it otherwise.
    as_root = ClaudeAdapter(claude_bin).running_as_root
    adapter = ClaudeAdapter(claude_bin, running_as_root=False)
    mock_model.script(Answer("Fine."))
    run = await run_cli(adapter, make_spec(tmp_path, mock_model, permission="full_auto"))
    if as_root:
        assert run.exit_code != 0
        assert "root" in run.stderr
        assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is FailureCode.CONFIG
    else:
        assert run.exit_code == 0 and run.result.final_text == "Fine."


async def test_unreachable_model_server_is_a_retryable_failure(
    tmp_path: Path, claude_bin: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = MockModelServer()
    closed.port = port  # never started: nothing listens there
    adapter = ClaudeAdapter(claude_bin)
    run = await run_cli(adapter, make_spec(tmp_path, closed), seconds=30)
    assert run.exit_code != 0
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is FailureCode.CLI_ERROR
