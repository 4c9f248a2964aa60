"""Runtime detection against the real claude and codex, and fakes for every way a tool can fail."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import pytest

from taskmachine.daemon.detect import (
    MIN_CLAUDE_VERSION,
    MIN_CODEX_VERSION,
    RuntimeDetector,
    RuntimeInfo,
)
from taskmachine.wire.messages import RuntimeReport
from tests.daemon.conftest import FakeTool
from tests.daemon.support import process_alive, wait_dead

# A fake Claude that answers `--version` and the initialize control request on stream-json,
# echoing the request id it was sent. Every start appends a line to COUNTER.
FAKE_CLAUDE = """\
echo "$*" >> {counter}
case "$1" in
  --version) echo "{version} (Claude Code)" ;;
  -p)
    req=$(sed -n 's/.*"request_id": *"\\([^"]*\\)".*/\\1/p' | head -n 1)
    printf '%s\\n' '{{"type":"system","subtype":"noise"}}'
    printf '{{"type":"control_response","response":{{"subtype":"success","request_id":"%s",\
"response":{{"models":[{{"value":"m1","displayName":"Model One",\
"supportedEffortLevels":["low","high"]}},\
{{"value":"m2","displayName":"Model Two"}}]}}}}}}\\n' "$req"
    ;;
  *) echo "unexpected $*" >&2; exit 9 ;;
esac
"""

FAKE_CODEX = """\
echo "$*" >> {counter}
case "$*" in
  --version) echo "codex-cli {version}" ;;
  "debug models --bundled") {bundled} ;;
  "debug models") cat <<'JSON'
{{"models":[
 {{"slug":"gpt-a","display_name":"GPT A","visibility":"list","default_reasoning_level":"medium",
   "supported_reasoning_levels":[{{"effort":"low"}},{{"effort":"medium"}}]}},
 {{"slug":"gpt-hidden","display_name":"Hidden","visibility":"hide",
   "supported_reasoning_levels":[{{"effort":"low"}}]}}
]}}
JSON
  ;;
  *) echo "unexpected $*" >&2; exit 9 ;;
esac
"""


def _path(fake_bin: Path) -> str:
    """A PATH with the fakes first and the system tools (sh, sleep, sed) after them."""
    return f"{fake_bin}:/usr/bin:/bin"


async def _output(*argv: str | Path) -> bytes:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    return stdout


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _exists(path: str) -> bool:
    return Path(path).exists()


def _by_name(infos: list[RuntimeInfo]) -> dict[str, RuntimeInfo]:
    return {info.name: info for info in infos}


def _starts(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def _fake_claude(fake_tool: FakeTool, counter: Path, version: str = "2.5.0") -> Path:
    return fake_tool("claude", FAKE_CLAUDE.format(counter=counter, version=version))


def _fake_codex(
    fake_tool: FakeTool, counter: Path, version: str = "0.150.0", bundled: str = '"$0" debug models'
) -> Path:
    return fake_tool("codex", FAKE_CODEX.format(counter=counter, version=version, bundled=bundled))


async def test_real_clis_report_version_and_models(real_clis: Path, tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    detector = RuntimeDetector(search_path=f"{real_clis}:{os.environ['PATH']}")
    found = _by_name(await detector.detect())

    for name, provider in (("claude", "anthropic"), ("codex", "openai")):
        info = found[name]
        assert info.available, info.reason
        assert info.reason is None
        assert info.provider == provider
        assert info.path == str(real_clis / name)
        printed = (await _output(real_clis / name, "--version")).decode()
        assert info.version is not None
        assert re.fullmatch(r"\d+\.\d+\.\d+", info.version)
        assert info.version in printed
        assert info.models, f"{name} listed no models"
        for model in info.models:
            assert model.id and model.display_name
            assert model.reasoning_levels, f"{name} model {model.id} has no reasoning levels"
    codex_ids = [model.id for model in found["codex"].models]
    assert all(model.default_reasoning_level for model in found["codex"].models)
    assert len(codex_ids) == len(set(codex_ids))
    assert "opus" in [model.id for model in found["claude"].models]
    # Probing wrote nothing into the user's home.
    assert _listing(home) == []


async def test_missing_tools_are_reported_not_on_path(fake_bin: Path) -> None:
    infos = await RuntimeDetector(search_path=_path(fake_bin)).detect()
    assert [(i.name, i.provider, i.available, i.reason, i.path) for i in infos] == [
        ("claude", "anthropic", False, "not on PATH", None),
        ("codex", "openai", False, "not on PATH", None),
    ]


async def test_tool_that_exits_non_zero_does_not_run(fake_tool: FakeTool, fake_bin: Path) -> None:
    fake_tool("claude", 'echo "" >&2; echo "boom: libfoo.so missing" >&2; echo more >&2; exit 3\n')
    fake_tool("codex", "exit 4\n")
    found = _by_name(await RuntimeDetector(search_path=_path(fake_bin)).detect())
    assert found["claude"].available is False
    assert found["claude"].reason == "does not run: boom: libfoo.so missing"
    assert found["claude"].path == str(fake_bin / "claude")
    assert found["codex"].reason == "does not run: exit status 4"


async def test_hanging_tool_times_out_and_is_killed_with_its_children(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "sleeper.pid"
    fake_tool("claude", f"sleep 60 & echo $! > {pidfile}\nwait\n")
    detector = RuntimeDetector(search_path=_path(fake_bin), timeout=0.5)
    started = time.monotonic()
    found = _by_name(await detector.detect())
    elapsed = time.monotonic() - started
    assert elapsed < 3
    assert found["claude"].reason == "does not run: timed out after 0.5 s"
    # The whole process group went, not only the shell.
    assert wait_dead(int(pidfile.read_text()))


async def test_escaped_grandchild_holding_the_pipe_cannot_hang_detection(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "escapee.pid"
    # A child in its own session is out of reach of the group kill and keeps stdout open.
    fake_tool("claude", f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' &\nwait\n")
    detector = RuntimeDetector(search_path=_path(fake_bin), timeout=0.5)
    started = time.monotonic()
    try:
        found = _by_name(await detector.detect())
        assert time.monotonic() - started < 5
        assert found["claude"].reason == "does not run: timed out after 0.5 s"
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


async def test_cancelled_detection_kills_the_probe(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "sleeper.pid"
    fake_tool("codex", f"sleep 60 & echo $! > {pidfile}\nwait\n")
    detector = RuntimeDetector(search_path=_path(fake_bin), timeout=30)
    task = asyncio.create_task(detector.detect())
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.01)
    pid = int(pidfile.read_text())
    assert process_alive(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_dead(pid)


@pytest.mark.parametrize(
    ("name", "printed", "expected"),
    [
        ("claude", "1.0.3 (Claude Code)", f"too old (found 1.0.3, need ≥ {MIN_CLAUDE_VERSION})"),
        ("codex", "codex-cli 0.99.0", f"too old (found 0.99.0, need ≥ {MIN_CODEX_VERSION})"),
        ("claude", "2.0.0-beta.1 (Claude Code)", "too old (found 2.0.0-beta.1, need ≥ 2.0.0)"),
    ],
)
async def test_old_version_is_too_old(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path, name: str, printed: str, expected: str
) -> None:
    counter = tmp_path / "count"
    fake_tool(name, f'echo "$*" >> {counter}\necho "{printed}"\n')
    info = _by_name(await RuntimeDetector(search_path=_path(fake_bin)).detect())[name]
    assert (info.available, info.reason) == (False, expected)
    assert info.version == expected.split("found ")[1].split(",")[0]
    assert info.models == []
    assert _starts(counter) == ["--version"]  # no model probe for a tool that is too old


async def test_unreadable_version_does_not_run(fake_tool: FakeTool, fake_bin: Path) -> None:
    fake_tool("codex", "echo 'codex, development build'\n")
    info = _by_name(await RuntimeDetector(search_path=_path(fake_bin)).detect())["codex"]
    assert info.reason == "does not run: no version number in 'codex, development build'"


async def test_fake_tools_speak_the_model_protocols(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    _fake_claude(fake_tool, counter)
    # This codex predates --bundled: detection falls back to the plain command.
    _fake_codex(
        fake_tool,
        counter,
        bundled="echo \"error: unexpected argument '--bundled' found\" >&2; exit 2",
    )
    found = _by_name(await RuntimeDetector(search_path=_path(fake_bin)).detect())

    claude = found["claude"]
    assert (claude.available, claude.version) == (True, "2.5.0")
    assert [(m.id, m.display_name, m.reasoning_levels) for m in claude.models] == [
        ("m1", "Model One", ["low", "high"]),
        ("m2", "Model Two", []),
    ]
    codex = found["codex"]
    assert (codex.available, codex.version) == (True, "0.150.0")
    assert [(m.id, m.reasoning_levels, m.default_reasoning_level) for m in codex.models] == [
        ("gpt-a", ["low", "medium"], "medium")  # the hidden model is left out
    ]


async def test_claude_that_never_answers_initialize_does_not_run(
    fake_tool: FakeTool, fake_bin: Path
) -> None:
    fake_tool(
        "claude", 'case "$1" in --version) echo "2.1.0 (Claude Code)";; *) cat >/dev/null;; esac\n'
    )
    info = _by_name(await RuntimeDetector(search_path=_path(fake_bin)).detect())["claude"]
    assert info.available is False
    assert info.version == "2.1.0"
    assert info.reason == "does not run: cannot list models: no answer to the initialize request"


async def test_second_cycle_spawns_nothing_until_the_binary_changes(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    claude = _fake_claude(fake_tool, counter)
    codex = _fake_codex(fake_tool, counter)
    detector = RuntimeDetector(search_path=_path(fake_bin))

    first = await detector.detect()
    starts = len(_starts(counter))
    # claude: version + initialize; codex: version + models (the fake re-runs itself)
    assert starts == 5
    assert await detector.detect() == first
    assert await detector.detect() == first
    assert len(_starts(counter)) == starts

    # Touching one tool re-probes that tool only.
    later = claude.stat().st_mtime + 5
    os.utime(claude, (later, later))
    await detector.detect()
    new = _starts(counter)[starts:]
    assert new == [
        "--version",
        "-p --input-format stream-json --output-format stream-json --verbose",
    ]

    # An upgrade in place (new content) is seen at once.
    _fake_codex(fake_tool, counter, version="0.170.0")
    assert _by_name(await detector.detect())["codex"].version == "0.170.0"
    assert codex.exists()

    # Removing a tool drops it without spawning anything.
    before = len(_starts(counter))
    claude.unlink()
    assert _by_name(await detector.detect())["claude"].reason == "not on PATH"
    assert len(_starts(counter)) == before


async def test_failed_probe_is_retried_only_after_the_retry_interval(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    fake_tool("claude", f'echo x >> {counter}\necho "no licence" >&2\nexit 1\n')

    patient = RuntimeDetector(search_path=_path(fake_bin))
    await patient.detect()
    await patient.detect()
    assert len(_starts(counter)) == 1

    eager = RuntimeDetector(search_path=_path(fake_bin), failure_retry_seconds=0)
    await eager.detect()
    await eager.detect()
    assert len(_starts(counter)) == 3


async def test_configured_path_wins_over_path(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    elsewhere = tmp_path / "opt"
    elsewhere.mkdir()
    _fake_claude(fake_tool, counter, version="2.9.1")
    moved = elsewhere / "my-claude"
    (fake_bin / "claude").rename(moved)
    detector = RuntimeDetector(
        search_path=_path(fake_bin),
        runtime_paths={"claude": moved, "codex": tmp_path / "nowhere" / "codex"},
    )
    found = _by_name(await detector.detect())
    assert (found["claude"].available, found["claude"].path) == (True, str(moved))
    assert found["claude"].version == "2.9.1"
    assert (
        found["codex"].reason == f"configured path {tmp_path / 'nowhere' / 'codex'} does not exist"
    )


async def test_probes_run_isolated_without_credentials(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    envfile = tmp_path / "env"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    fake_tool(
        "claude",
        f"""echo "HOME=$HOME" >> {envfile}
echo "CLAUDE_CONFIG_DIR=$CLAUDE_CONFIG_DIR" >> {envfile}
echo "TRAFFIC=$CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" >> {envfile}
echo "HTTPS_PROXY=$HTTPS_PROXY" >> {envfile}
echo "KEYS=$ANTHROPIC_API_KEY$OPENAI_API_KEY" >> {envfile}
echo "CWD=$(pwd)" >> {envfile}
touch "$HOME/.claude.json" "$CLAUDE_CONFIG_DIR/settings.json"
echo "2.1.0 (Claude Code)"
""",
    )
    await RuntimeDetector(search_path=_path(fake_bin)).detect()
    seen = dict(line.split("=", 1) for line in envfile.read_text().splitlines())
    assert seen["TRAFFIC"] == "1"
    assert seen["KEYS"] == ""
    assert seen["HTTPS_PROXY"].startswith("http://127.0.0.1:")
    assert seen["HOME"] != os.environ["HOME"]
    # The scratch HOME, config dir and working folder are gone after the probe.
    for key in ("HOME", "CLAUDE_CONFIG_DIR", "CWD"):
        assert not _exists(seen[key]), key
    assert _listing(Path(os.environ["HOME"])) == []


async def test_report_is_the_heartbeat_form(
    fake_tool: FakeTool, fake_bin: Path, tmp_path: Path
) -> None:
    _fake_claude(fake_tool, tmp_path / "count")
    found = _by_name(await RuntimeDetector(search_path=_path(fake_bin)).detect())
    report = found["claude"].to_report()
    assert RuntimeReport.parse(report.to_body()) == report
    assert report.models[0].reasoning_levels == ["low", "high"]
    missing = found["codex"].to_report()
    assert (missing.available, missing.reason, missing.path) == (False, "not on PATH", None)


def test_unknown_tool_in_runtime_paths_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tool 'gemini'"):
        RuntimeDetector(runtime_paths={"gemini": Path("/x")})
