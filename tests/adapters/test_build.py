"""What each adapter asks the OS to start: argv, environment, folder and stdin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from taskmachine.daemon.adapters import (
    AdapterRunSpec,
    ClaudeAdapter,
    ClaudeProvider,
    CodexAdapter,
    CodexProvider,
    InvalidRunSpec,
    ProviderOverrides,
    effective_permission,
    get_adapter,
)

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/home/someone", "CLAUDECODE": "1"}


def spec(tmp_path: Path, **fields: Any) -> AdapterRunSpec:
    values: dict[str, Any] = {"prompt": "Fix the bug.", "cwd": tmp_path, "base_env": BASE_ENV}
    values.update(fields)
    return AdapterRunSpec(**values)


def flag_value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def config_overrides(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"]


# -- permission ceiling --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "ceiling", "expected"),
    [
        ("safe", "safe", "safe"),
        ("safe", "full_auto", "safe"),
        ("full_auto", "safe", "safe"),
        ("full_auto", "full_auto", "full_auto"),
    ],
)
def test_effective_permission_is_the_lower_of_server_and_ceiling(
    server: Any, ceiling: Any, expected: str
) -> None:
    assert effective_permission(server, ceiling) == expected


def test_the_default_permission_is_safe(tmp_path: Path) -> None:
    assert spec(tmp_path).permission == "safe"


# -- Claude --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("permission", "root", "mode", "is_sandbox"),
    [
        ("safe", False, "acceptEdits", None),
        ("safe", True, "acceptEdits", None),
        ("full_auto", False, "bypassPermissions", None),
        ("full_auto", True, "bypassPermissions", "1"),
    ],
)
def test_claude_permission_modes(
    tmp_path: Path, permission: Any, root: bool, mode: str, is_sandbox: str | None
) -> None:
    invocation = ClaudeAdapter("/opt/claude", running_as_root=root).build(
        spec(tmp_path, permission=permission)
    )
    assert flag_value(invocation.argv, "--permission-mode") == mode
    assert "--dangerously-skip-permissions" not in invocation.argv
    assert invocation.env.get("IS_SANDBOX") == is_sandbox


@pytest.mark.parametrize("model", [None, "claude-opus-5-5", "opus"])
@pytest.mark.parametrize("effort", [None, "high"])
@pytest.mark.parametrize("resume", [None, "3068fd09-6f6d-42be-befb-03e1e959d539"])
def test_claude_argv(
    tmp_path: Path, model: str | None, effort: str | None, resume: str | None
) -> None:
    invocation = ClaudeAdapter("/opt/claude", running_as_root=False).build(
        spec(tmp_path, model=model, reasoning_level=effort, resume_session_id=resume)
    )
    argv = invocation.argv
    assert argv[:5] == ["/opt/claude", "-p", "--output-format", "stream-json", "--verbose"]
    assert flag_value(argv, "--model") == model
    assert flag_value(argv, "--effort") == effort
    assert flag_value(argv, "--resume") == resume
    # The prompt goes on stdin, never in argv.
    assert "Fix the bug." not in argv
    assert invocation.stdin == b"Fix the bug."
    assert invocation.cwd == tmp_path


def test_claude_environment(tmp_path: Path) -> None:
    home = tmp_path / "claude-home"
    invocation = ClaudeAdapter("claude", running_as_root=False).build(
        spec(
            tmp_path,
            home=home,
            max_retries=2,
            extra_env={"TAMA_RUN_TOKEN": "rt-1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "0"},
            provider_overrides=ProviderOverrides(
                claude=ClaudeProvider(
                    base_url="http://127.0.0.1:9999/", api_key="sk-a", auth_token="tok"
                ),
                env={"HTTPS_PROXY": "http://127.0.0.1:3128"},
            ),
        )
    )
    env = invocation.env
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9999"
    assert env["ANTHROPIC_API_KEY"] == "sk-a"
    assert env["ANTHROPIC_AUTH_TOKEN"] == "tok"
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:3128"
    assert env["TAMA_RUN_TOKEN"] == "rt-1"
    # The run's own environment cannot turn the network guard off.
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "2"
    assert env["CLAUDE_CONFIG_DIR"] == str(home)
    assert home.is_dir()
    assert env["PATH"] == "/usr/bin:/bin"
    # A daemon started from inside a Claude session must not pass that marker on.
    assert "CLAUDECODE" not in env


def test_claude_without_overrides_keeps_the_users_setup(tmp_path: Path) -> None:
    env = ClaudeAdapter("claude", running_as_root=False).build(spec(tmp_path)).env
    assert "ANTHROPIC_BASE_URL" not in env
    assert "CLAUDE_CONFIG_DIR" not in env
    assert "CLAUDE_CODE_MAX_RETRIES" not in env
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["HOME"] == "/home/someone"


# -- Codex ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, "gpt-5.5"])
@pytest.mark.parametrize("effort", [None, "high"])
@pytest.mark.parametrize("resume", [None, "01a1fcc1-6832-7b93-8d87-81cc4dfe61fc"])
@pytest.mark.parametrize("permission", ["safe", "full_auto"])
def test_codex_argv(
    tmp_path: Path, model: str | None, effort: str | None, resume: str | None, permission: Any
) -> None:
    invocation = CodexAdapter("/opt/codex").build(
        spec(
            tmp_path,
            model=model,
            reasoning_level=effort,
            resume_session_id=resume,
            permission=permission,
        )
    )
    argv = invocation.argv
    head = ["/opt/codex", "exec", "resume"] if resume else ["/opt/codex", "exec"]
    assert argv[: len(head)] == head
    assert "--json" in argv and "--skip-git-repo-check" in argv
    # Off the network except for the model API.
    overrides = config_overrides(argv)
    assert "analytics.enabled=false" in overrides
    disabled = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--disable"]
    assert disabled == ["plugins", "unbounded_connection_retries"]
    assert flag_value(argv, "-m") == model
    efforts = [o for o in overrides if o.startswith("model_reasoning_effort=")]
    assert efforts == ([f'model_reasoning_effort="{effort}"'] if effort else [])
    if permission == "safe":
        assert 'sandbox_mode="workspace-write"' in overrides
        assert 'approval_policy="never"' in overrides
        assert "--dangerously-bypass-approvals-and-sandbox" not in argv
    else:
        assert "--dangerously-bypass-approvals-and-sandbox" in argv
        assert not any(o.startswith("sandbox_mode=") for o in overrides)
    # The thread id, then "-": read the prompt from stdin.
    assert argv[-2:] == ([resume, "-"] if resume else [argv[-2], "-"])
    assert "Fix the bug." not in argv
    assert invocation.stdin == b"Fix the bug."


def test_codex_provider_override(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    invocation = CodexAdapter("codex").build(
        spec(
            tmp_path,
            home=home,
            max_retries=0,
            provider_overrides=ProviderOverrides(
                codex=CodexProvider(
                    base_url="http://127.0.0.1:8080/v1", env_key="MY_KEY", api_key="sk-c"
                )
            ),
        )
    )
    overrides = config_overrides(invocation.argv)
    assert 'model_provider="taskmachine"' in overrides
    assert (
        "model_providers.taskmachine={"
        'name="taskmachine",base_url="http://127.0.0.1:8080/v1",env_key="MY_KEY",'
        'wire_api="responses",request_max_retries=0,stream_max_retries=0}'
    ) in overrides
    assert invocation.env["MY_KEY"] == "sk-c"
    assert invocation.env["CODEX_HOME"] == str(home)
    assert home.is_dir()


def test_codex_without_overrides_names_no_provider(tmp_path: Path) -> None:
    invocation = CodexAdapter("codex").build(spec(tmp_path))
    assert not any(o.startswith("model_provider") for o in config_overrides(invocation.argv))
    assert "CODEX_HOME" not in invocation.env


@pytest.mark.parametrize("permission", ["safe", "full_auto"])
def test_allowed_commands_and_sandbox_network(tmp_path: Path, permission: Any) -> None:
    fields = {
        "allowed_commands": ["tama", "git"],
        "sandbox_network": True,
        "permission": permission,
    }
    claude = ClaudeAdapter("claude", running_as_root=False).build(spec(tmp_path, **fields)).argv
    pairs = [claude[i + 1] for i, arg in enumerate(claude) if arg == "--allowedTools"]
    assert pairs == ["Bash(tama:*)", "Bash(git:*)"]
    codex = CodexAdapter("codex").build(spec(tmp_path, **fields)).argv
    network = "sandbox_workspace_write.network_access=true" in config_overrides(codex)
    # Only the sandbox of safe mode needs opening; full_auto has none.
    assert network is (permission == "safe")
    plain = CodexAdapter("codex").build(spec(tmp_path, permission=permission)).argv
    assert "sandbox_workspace_write.network_access=true" not in config_overrides(plain)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"model": "--dangerously-skip-permissions"}, "model"),
        ({"model": "gpt 5"}, "model"),
        ({"reasoning_level": "high; rm -rf /"}, "reasoning_level"),
        ({"resume_session_id": "-x"}, "resume_session_id"),
        ({"permission": "yolo"}, "permission"),
        ({"cwd": "relative/run"}, "cwd"),
        ({"home": "relative/home"}, "home"),
        ({"extra_env": {"BAD NAME": "x"}}, "extra_env"),
        ({"extra_env": {"OK": "a\0b"}}, "extra_env"),
        ({"max_retries": -1}, "max_retries"),
        ({"allowed_commands": ["rm -rf"]}, "allowed_commands"),
        ({"allowed_commands": ["tama:*) Bash(*"]}, "allowed_commands"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_bad_specs_are_refused_with_the_field_named(
    tmp_path: Path, fields: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(tmp_path, **fields)
    assert complaint in str(caught.value)


@pytest.mark.parametrize(
    "provider",
    [
        lambda: ClaudeProvider(base_url="ftp://example"),
        lambda: CodexProvider(base_url="not a url"),
        lambda: CodexProvider(base_url="http://127.0.0.1/v1", env_key="1BAD"),
        lambda: CodexProvider(base_url="http://127.0.0.1/v1", name="Bad Name"),
    ],
)
def test_bad_provider_overrides_are_refused(provider: Any) -> None:
    with pytest.raises(ValidationError):
        provider()


@pytest.mark.parametrize("adapter", [ClaudeAdapter("claude"), CodexAdapter("codex")])
def test_a_missing_run_folder_is_refused_and_nothing_is_created(
    tmp_path: Path, adapter: Any
) -> None:
    missing = tmp_path / "gone"
    home = tmp_path / "home"
    with pytest.raises(InvalidRunSpec, match="does not exist"):
        adapter.build(spec(tmp_path, cwd=missing, home=home))
    assert not home.exists()


def test_get_adapter() -> None:
    assert isinstance(get_adapter("claude", "/x/claude"), ClaudeAdapter)
    assert get_adapter("codex").executable == "codex"
    with pytest.raises(ValueError, match="no adapter for runtime 'gemini'"):
        get_adapter("gemini")


def test_secrets_stay_out_of_reprs(tmp_path: Path) -> None:
    run_spec = spec(
        tmp_path,
        extra_env={"TAMA_RUN_TOKEN": "hunter2-run"},
        provider_overrides=ProviderOverrides(
            claude=ClaudeProvider(api_key="hunter2-key"),
            codex=CodexProvider(base_url="http://127.0.0.1/v1", api_key="hunter2-codex"),
        ),
    )
    invocation = ClaudeAdapter("claude", running_as_root=False).build(run_spec)
    assert invocation.env["ANTHROPIC_API_KEY"] == "hunter2-key"
    assert invocation.env["TAMA_RUN_TOKEN"] == "hunter2-run"
    assert CodexAdapter("codex").build(run_spec).env["TASKMACHINE_CODEX_API_KEY"] == "hunter2-codex"
    for text in (repr(run_spec), str(run_spec), repr(invocation)):
        assert "hunter2" not in text
