"""The real `codex` binary against the mock model server: it runs the scripted shell command for
real in the run folder (inside its sandbox in safe mode), answers, resumes its thread, and fails
the way we classify."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmachine.daemon.adapters import CodexAdapter
from taskmachine.wire.transcript import (
    ErrorEvent,
    FailureCode,
    SessionEvent,
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
    REASONING_TOKENS,
    Answer,
    Fail,
    MockModelServer,
    ShellCall,
)

# A catalogued model that offers exec_command directly (the newest ones use code mode).
MODEL = "gpt-5.5"


async def test_tool_call_then_answer_then_resume(
    tmp_path: Path, codex_bin: Path, mock_model: MockModelServer
) -> None:
    adapter = CodexAdapter(codex_bin)
    mock_model.script(ShellCall("echo hello > out.txt"), Answer("I wrote out.txt."))
    spec = make_spec(
        tmp_path, mock_model, "Write hello to out.txt", model=MODEL, reasoning_level="high"
    )

    first = await run_cli(adapter, spec)

    assert first.exit_code == 0, first.stderr
    assert (spec.cwd / "out.txt").read_text() == "hello\n"
    [call] = first.of(ToolCallEvent)
    assert call.name == "shell" and "echo hello > out.txt" in call.input["command"]
    [tool_result] = first.of(ToolResultEvent)
    assert tool_result.call_id == call.call_id and not tool_result.is_error
    assert first.of(TextEvent)[-1].text == "I wrote out.txt."
    [usage] = first.of(UsageEvent)
    assert usage.input_tokens == 2 * INPUT_TOKENS
    assert usage.cached_input_tokens == 2 * CACHED_INPUT_TOKENS
    assert usage.output_tokens == 2 * OUTPUT_TOKENS
    assert usage.reasoning_tokens == 2 * REASONING_TOKENS
    thread_id = first.result.session_id
    assert thread_id is not None and first.of(SessionEvent)[0].session_id == thread_id
    assert first.result.completed and first.result.final_text == "I wrote out.txt."
    main = mock_model.main_requests
    assert len(main) == 2
    assert main[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert main[0].body["model"] == MODEL
    assert main[0].body["reasoning"]["effort"] == "high"
    assert main[0].mentions("Write hello to out.txt")
    assert main[1].mentions("function_call_output")

    mock_model.clear()
    mock_model.script(ShellCall("echo again > second.txt"), Answer("Second turn done."))
    resumed_spec = spec.model_copy(
        update={
            "prompt": "Now write second.txt",
            "resume_session_id": thread_id,
            "prior_usage": first.result.session_usage,
        }
    )
    second = await run_cli(adapter, resumed_spec)

    assert second.exit_code == 0, second.stderr
    assert (spec.cwd / "second.txt").read_text() == "again\n"
    assert second.result.session_id == thread_id
    assert second.result.final_text == "Second turn done."
    request = mock_model.main_requests[0]
    # The resumed thread replays the first turn: prompt, tool call and answer.
    assert request.mentions("Write hello to out.txt")
    assert request.mentions("echo hello > out.txt")
    assert request.mentions("I wrote out.txt.")
    assert request.mentions("Now write second.txt")
    # Codex reports the thread's totals; the run's own share is what this turn added.
    assert second.result.usage.input_tokens == 2 * INPUT_TOKENS
    assert second.result.session_usage is not None
    assert second.result.session_usage.input_tokens == 4 * INPUT_TOKENS


async def test_default_model_in_code_mode(
    tmp_path: Path, codex_bin: Path, mock_model: MockModelServer
) -> None:
    # Without -m, Codex picks its newest model, which reaches the shell through its `exec` tool.
    mock_model.script(ShellCall("echo coded > out.txt"), Answer("Done."))
    spec = make_spec(tmp_path, mock_model)
    run = await run_cli(CodexAdapter(codex_bin), spec)
    assert run.exit_code == 0, run.stderr
    assert (spec.cwd / "out.txt").read_text() == "coded\n"
    assert run.of(ToolCallEvent) and run.result.final_text == "Done."


@pytest.fixture
def outside_path() -> Iterator[Path]:
    # Outside the run folder and outside /tmp (which Codex's sandbox leaves writable).
    path = Path("/var/tmp") / f"taskmachine-sandbox-probe-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("permission", "escapes"), [("safe", False), ("full_auto", True)], ids=["safe", "full_auto"]
)
async def test_permission_decides_where_commands_may_write(
    tmp_path: Path,
    codex_bin: Path,
    mock_model: MockModelServer,
    outside_path: Path,
    permission: Any,
    escapes: bool,
) -> None:
    mock_model.script(ShellCall(f"echo in > in.txt; echo out > {outside_path}"), Answer("Tried."))
    spec = make_spec(tmp_path, mock_model, model=MODEL, permission=permission)
    run = await run_cli(CodexAdapter(codex_bin), spec)

    assert run.exit_code == 0, run.stderr
    assert (spec.cwd / "in.txt").exists()
    assert exists(outside_path) is escapes
    # The model is told why the write failed. (Codex 0.169 mostly leaves a command its sandbox
    # stopped out of its JSON stream, so the model's history is the place to look.)
    assert mock_model.requests[-1].mentions("Read-only file system") is not escapes
    if escapes:
        [result] = run.of(ToolResultEvent)
        assert not result.is_error


@pytest.mark.parametrize("network", [True, False], ids=["network", "no-network"])
async def test_sandbox_network_lets_tama_reach_the_server(
    tmp_path: Path, codex_bin: Path, mock_model: MockModelServer, network: bool
) -> None:
    # By absolute path: Codex runs commands in a login shell, which resets PATH.
    tama = install_fake(tmp_path, "tama.sh", "tama")
    mock_model.script(ShellCall(f"{tama} tasks list"), Answer("Listed."))
    spec = make_spec(
        tmp_path,
        mock_model,
        model=MODEL,
        sandbox_network=network,
        extra_env={"TAMA_API_URL": mock_model.url},
    )
    run = await run_cli(CodexAdapter(codex_bin), spec)

    assert run.exit_code == 0, run.stderr
    history = mock_model.requests[-1]
    assert history.mentions("tama: server answered 200") is network
    assert history.mentions("Operation not permitted") is not network


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        (Fail(401), FailureCode.AUTH),
        (Fail(403), FailureCode.AUTH),
        (Fail(429), FailureCode.QUOTA),
        (Fail(429, code="rate_limit_exceeded"), FailureCode.QUOTA),
        (Fail(404), FailureCode.CONFIG),
        (Fail(500), FailureCode.CLI_ERROR),
    ],
    ids=["401", "403", "429-quota", "429-rate", "404-model", "500"],
)
async def test_model_server_failures_are_classified(
    tmp_path: Path, codex_bin: Path, mock_model: MockModelServer, turn: Fail, expected: FailureCode
) -> None:
    mock_model.script(turn)
    adapter = CodexAdapter(codex_bin)
    run = await run_cli(adapter, make_spec(tmp_path, mock_model, model=MODEL))

    assert run.exit_code != 0
    assert not run.result.completed
    assert run.result.error
    assert run.of(ErrorEvent)
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is expected


async def test_missing_api_key_is_an_auth_failure(
    tmp_path: Path, codex_bin: Path, mock_model: MockModelServer
) -> None:
    spec = make_spec(tmp_path, mock_model, model=MODEL)
    provider = spec.provider_overrides.codex
    assert provider is not None
    keyless = spec.provider_overrides.model_copy(
        update={"codex": provider.model_copy(update={"api_key": None})}
    )
    adapter = CodexAdapter(codex_bin)
    run = await run_cli(adapter, spec.model_copy(update={"provider_overrides": keyless}))
    assert run.exit_code != 0
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is FailureCode.AUTH
    assert mock_model.requests == []


async def test_unknown_thread_is_a_config_failure(
    tmp_path: Path, codex_bin: Path, mock_model: MockModelServer
) -> None:
    adapter = CodexAdapter(codex_bin)
    spec = make_spec(tmp_path, mock_model, resume_session_id="01a1fcc1-0000-7000-8000-000000000000")
    run = await run_cli(adapter, spec)
    assert run.exit_code != 0
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is FailureCode.CONFIG
    assert mock_model.requests == []


async def test_unreachable_model_server_is_a_retryable_failure(
    tmp_path: Path, codex_bin: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = MockModelServer()
    closed.port = port  # never started: nothing listens there
    adapter = CodexAdapter(codex_bin)
    run = await run_cli(adapter, make_spec(tmp_path, closed, model=MODEL), seconds=30)
    assert run.exit_code != 0
    assert adapter.classify_failure(run.exit_code, run.stderr, run.result) is FailureCode.CLI_ERROR
