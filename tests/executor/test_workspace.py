"""Run folders and git worktrees with a real git: one branch per run, kept across attempts,
fresh on request, never pushed; the diff stat covers commits, edits and new files."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from taskmachine.daemon.executor.workspace import (
    WorkspaceError,
    diff_stat,
    prepare_run_folder,
)
from taskmachine.wire.runs import SkillFile
from tests.executor.conftest import EventLog, MakeHarness, Publish, make_job


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("one\ntwo\n")
    (path / "b.txt").write_text("bee\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "init")
    return path


async def test_a_worktree_per_run_with_a_diff_stat_of_all_the_agent_did(
    tmp_path: Path, repo: Path
) -> None:
    skill = SkillFile(path="s/SKILL.md", content="skill")
    job = make_job(skills=[skill])
    folder = await prepare_run_folder(tmp_path / "work", job, repo)

    assert (
        folder.path
        == tmp_path / "work" / str(job.workspace_id) / str(job.subject_id) / f"run-{job.run_id}"
    )
    assert folder.branch == f"tama/run-{job.run_id}"
    assert _git(folder.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == folder.branch
    assert await diff_stat(folder) == ""
    # An edit, a deletion, a new file, and a commit of another new file.
    (folder.path / "a.txt").write_text("one\n2\n3\n")
    (folder.path / "b.txt").unlink()
    (folder.path / "new.txt").write_text("new\n")
    (folder.path / "committed.txt").write_text("c\n")
    _git(folder.path, "add", "committed.txt")
    _git(folder.path, "commit", "-q", "-m", "agent commit")

    stat = await diff_stat(folder)

    assert stat is not None
    for name in ("a.txt", "b.txt", "new.txt", "committed.txt"):
        assert name in stat
    assert "SKILL.md" not in stat
    assert "4 files changed" in stat
    # The diff stat left the worktree's own index alone; the repository is untouched.
    assert "new.txt" in _git(folder.path, "status", "--porcelain")
    assert "?? new.txt" in _git(folder.path, "status", "--porcelain")
    assert not (repo / "new.txt").exists()
    assert _git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


async def test_the_next_attempt_keeps_the_worktree_and_a_clean_one_starts_over(
    tmp_path: Path, repo: Path
) -> None:
    job = make_job()
    first = await prepare_run_folder(tmp_path / "work", job, repo)
    (first.path / "work.txt").write_text("progress\n")
    # The repository moves on meanwhile; the worktree's base stays where the run began.
    (repo / "later.txt").write_text("later\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "later")

    retry = await prepare_run_folder(tmp_path / "work", job.model_copy(update={"attempt": 2}), repo)
    assert retry.path == first.path and retry.base == first.base
    assert (retry.path / "work.txt").exists()
    assert "work.txt" in (await diff_stat(retry) or "")

    clean = await prepare_run_folder(
        tmp_path / "work", job.model_copy(update={"attempt": 3, "clean_worktree": True}), repo
    )
    assert not (clean.path / "work.txt").exists()
    assert (clean.path / "later.txt").exists()
    assert clean.base != first.base
    assert await diff_stat(clean) == ""


async def test_a_repository_without_commits_is_a_workspace_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q")
    with pytest.raises(WorkspaceError, match="no commit"):
        await prepare_run_folder(tmp_path / "work", make_job(), empty)


async def test_a_skill_cannot_be_written_through_a_symlink_out_of_the_run(
    tmp_path: Path, repo: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / ".claude").mkdir()
    (repo / ".claude" / "skills").symlink_to(outside)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "sneaky link")
    job = make_job(skills=[SkillFile(path="x/SKILL.md", content="boom")])

    with pytest.raises(WorkspaceError, match="outside the run"):
        await prepare_run_folder(tmp_path / "work", job, repo)
    assert list(outside.iterdir()) == []


async def test_a_missing_bound_repository_fails_the_run_with_workspace_error(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    workspace = uuid.uuid4()
    await make_harness(workspace_repos={workspace: tmp_path / "gone"})
    job = make_job(workspace_id=workspace)

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "failed" and finished.failure_code == "workspace_error"
    assert "missing" in (finished.error or "")
    # Local paths never leave the machine.
    assert str(tmp_path) not in (finished.error or "")
