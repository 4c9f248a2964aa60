"""The real `claude` and `codex` binaries through the executor, against the mock model server:
a job in, the CLI runs a shell command for real in its run folder, the transcript and the
finished report (session id, usage, diff stat) come out on tama.server.events."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskmachine.daemon.adapters import ClaudeProvider, CodexProvider, ProviderOverrides
from taskmachine.wire.runs import RunOutput, SkillFile
from tests.executor.conftest import REAL_CLIS, EventLog, MakeHarness, Publish, RunEvent, make_job
from tests.mockmodel.server import Answer, MockModelServer, ShellCall

SKILL = SkillFile(
    path="taskmachine-tasks/SKILL.md",
    content="---\nname: taskmachine-tasks\ndescription: Zebra-lantern skill for task updates.\n"
    "---\nUse `tama tasks` to update the task.\n",
)


@pytest.fixture
def real_clis() -> dict[str, Path]:
    paths = {name: REAL_CLIS / name for name in ("claude", "codex")}
    for path in paths.values():
        assert path.exists(), f"{path} is missing: run scripts/install-clis"
    return paths


@pytest.fixture
async def mock_model() -> AsyncIterator[MockModelServer]:
    async with MockModelServer() as server:
        yield server


def _overrides(mock: MockModelServer) -> ProviderOverrides:
    return ProviderOverrides(
        claude=ClaudeProvider(base_url=mock.url, api_key="sk-mock"),
        codex=CodexProvider(base_url=mock.openai_base_url, api_key="sk-mock"),
    )


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def _make_repo(path: Path) -> Path:
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("hello\n")
    _git(path, "add", ".")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return path


def _kinds(events: list[RunEvent]) -> list[str]:
    return [str(item["kind"]) for e in events if isinstance(e, RunOutput) for item in e.events]


async def test_real_claude_works_in_a_worktree_with_its_skill(
    tmp_path: Path,
    make_harness: MakeHarness,
    publish_job: Publish,
    event_log: EventLog,
    real_clis: dict[str, Path],
    mock_model: MockModelServer,
) -> None:
    repo = _make_repo(tmp_path / "repo")
    workspace = uuid.uuid4()
    harness = await make_harness(
        runtime_paths=real_clis,
        workspace_repos={workspace: repo},
        provider_overrides=_overrides(mock_model),
        max_retries=0,
    )
    mock_model.script(ShellCall("echo hello > out.txt"), Answer("I wrote out.txt."))
    job = make_job(
        runtime="claude", prompt="Write hello to out.txt", workspace_id=workspace, skills=[SKILL]
    )

    await publish_job(job)
    finished = await event_log.finished(job.run_id, within=60)

    assert finished.outcome == "succeeded", finished
    assert finished.session_id and uuid.UUID(finished.session_id)
    assert finished.usage["input_tokens"] > 0 and (finished.cost_usd or 0) > 0
    kinds = _kinds(event_log.of(job.run_id))
    assert {"session", "tool_call", "tool_result", "text", "usage"} <= set(kinds)
    worktree = (
        harness.config.execution_root / str(workspace) / str(job.subject_id) / f"run-{job.run_id}"
    )
    assert (worktree / "out.txt").read_text() == "hello\n"
    assert not (repo / "out.txt").exists()
    assert f"tama/run-{job.run_id}" in _git(repo, "branch", "--list")
    # The skill was where Claude reads skills, and the model was told about it.
    assert (worktree / ".claude/skills/taskmachine-tasks/SKILL.md").exists()
    assert mock_model.main_requests[0].mentions("Zebra-lantern")
    # The diff stat shows the agent's work, not the daemon's skill file.
    assert finished.diff_stat is not None and "out.txt" in finished.diff_stat
    assert "SKILL.md" not in finished.diff_stat
    assert "1 file changed" in finished.diff_stat


async def test_real_codex_runs_in_its_subject_folder(
    tmp_path: Path,
    make_harness: MakeHarness,
    publish_job: Publish,
    event_log: EventLog,
    real_clis: dict[str, Path],
    mock_model: MockModelServer,
) -> None:
    harness = await make_harness(
        runtime_paths=real_clis, provider_overrides=_overrides(mock_model), max_retries=0
    )
    mock_model.script(ShellCall("echo hello > out.txt"), Answer("I wrote out.txt."))
    job = make_job(runtime="codex", prompt="Write hello to out.txt", skills=[SKILL])

    await publish_job(job)
    finished = await event_log.finished(job.run_id, within=60)

    assert finished.outcome == "succeeded", finished
    assert finished.session_id
    assert finished.usage["input_tokens"] > 0
    folder = harness.config.execution_root / str(job.workspace_id) / str(job.subject_id)
    assert (folder / "out.txt").read_text() == "hello\n"
    assert {"session", "tool_call", "tool_result", "text", "usage"} <= set(
        _kinds(event_log.of(job.run_id))
    )
    assert (folder / ".agents/skills/taskmachine-tasks/SKILL.md").exists()
    assert mock_model.main_requests[0].mentions("Zebra-lantern")
    assert finished.diff_stat is None
