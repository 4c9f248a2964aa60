"""Where a run works: its folder, its git worktree (when the workspace is bound to a repository),
the skill files the CLI reads, and the diff stat that goes back with the result.

    <execution_root>/<workspace>/<subject>                 unbound workspace: the run folder
    <execution_root>/<workspace>/<subject>/run-<run_id>    bound: a worktree on tama/run-<run_id>

A worktree belongs to one run and is kept across its attempts, unless the job asks for a clean
one (the retry after a lost lease). Nothing is ever pushed. The commit a worktree started from is
kept in the worktree's own git dir (`tama-base`), so the diff stat covers everything the agent
did — commits, edits and new files — however many attempts it took.

Skill files go where each CLI discovers them in its working folder (checked with the real
binaries): Claude Code reads `.claude/skills/<name>/SKILL.md`; Codex 0.169 reads
`.agents/skills/<name>/SKILL.md` (also `.codex/skills` and `$CODEX_HOME/skills`). They are left
out of the diff stat: the daemon wrote them, not the agent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from taskmachine.wire.runs import RunJob, SkillFile
from taskmachine.wire.transcript import truncate

SKILL_FOLDERS = {"claude": ".claude/skills", "codex": ".agents/skills"}
DEFAULT_SKILL_FOLDER = ".agents/skills"
DIFF_STAT_LIMIT = 20_000
_BASE_FILE = "tama-base"
_GIT_SECONDS = 120.0


class WorkspaceError(Exception):
    """The run folder or worktree could not be made; the message says why (no secrets)."""


@dataclass(frozen=True, slots=True)
class RunFolder:
    path: Path
    # Set when the run works in a git worktree.
    branch: str | None = None
    base: str | None = None
    # Paths (relative to `path`) the daemon wrote, left out of the diff stat.
    written: list[str] = field(default_factory=list)


def subject_folder(execution_root: Path, job: RunJob) -> Path:
    return execution_root / str(job.workspace_id) / str(job.subject_id)


def branch_name(job: RunJob) -> str:
    return f"tama/run-{job.run_id}"


async def _git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), _GIT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise WorkspaceError(f"git {args[0]} took longer than {_GIT_SECONDS:g} s") from None
    if process.returncode != 0:
        message = err.decode("utf-8", errors="replace").strip().splitlines()
        raise WorkspaceError(f"git {args[0]} failed: {message[-1] if message else 'no message'}")
    return out.decode("utf-8", errors="replace")


async def prepare_run_folder(execution_root: Path, job: RunJob, repo: Path | None) -> RunFolder:
    """Make the run's folder (and worktree), and write its skill files."""
    subject = subject_folder(execution_root, job)
    if repo is None:
        # The plain folder and its skill files in one trip to a thread: it precedes every spawn.
        def make() -> list[str]:
            subject.mkdir(parents=True, exist_ok=True)
            return write_skills(subject, job.runtime, job.skills)

        try:
            written = await asyncio.to_thread(make)
        except OSError as exc:
            raise WorkspaceError(f"cannot create the run folder: {exc.strerror}") from None
        return RunFolder(path=subject, written=written)
    try:
        await asyncio.to_thread(subject.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(f"cannot create the run folder: {exc.strerror}") from None
    folder = await _worktree(repo, subject / f"run-{job.run_id}", job)
    written = await asyncio.to_thread(write_skills, folder.path, job.runtime, job.skills)
    return RunFolder(path=folder.path, branch=folder.branch, base=folder.base, written=written)


async def _worktree(repo: Path, path: Path, job: RunJob) -> RunFolder:
    if not await asyncio.to_thread(repo.is_dir):
        raise WorkspaceError(f"the repository bound to workspace {job.workspace_id} is missing")
    branch = branch_name(job)
    if job.clean_worktree:
        await _remove_worktree(repo, path, branch)
    git_file = path / ".git"
    if await asyncio.to_thread(git_file.exists):
        git_dir = Path((await _git("rev-parse", "--absolute-git-dir", cwd=path)).strip())
        base = await asyncio.to_thread(_read_base, git_dir)
        if base is None:
            base = (await _git("rev-parse", "HEAD", cwd=path)).strip()
        return RunFolder(path=path, branch=branch, base=base)
    await _git("worktree", "prune", cwd=repo)
    if await asyncio.to_thread(path.exists):
        # A folder that is not a worktree (an interrupted create): start it again.
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
    try:
        base = (await _git("rev-parse", "--verify", "HEAD^{commit}", cwd=repo)).strip()
    except WorkspaceError:
        raise WorkspaceError(
            "the bound repository has no commit to start a worktree from"
        ) from None
    if await _branch_exists(repo, branch):
        await _git("worktree", "add", str(path), branch, cwd=repo)
    else:
        await _git("worktree", "add", "-b", branch, str(path), base, cwd=repo)
    git_dir = Path((await _git("rev-parse", "--absolute-git-dir", cwd=path)).strip())
    await asyncio.to_thread((git_dir / _BASE_FILE).write_text, base + "\n")
    return RunFolder(path=path, branch=branch, base=base)


async def _branch_exists(repo: Path, branch: str) -> bool:
    try:
        await _git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=repo)
    except WorkspaceError:
        return False
    return True


async def _remove_worktree(repo: Path, path: Path, branch: str) -> None:
    if await asyncio.to_thread(path.exists):
        try:
            await _git("worktree", "remove", "--force", "--force", str(path), cwd=repo)
        except WorkspaceError:
            await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
    await _git("worktree", "prune", cwd=repo)
    if await _branch_exists(repo, branch):
        await _git("branch", "-D", branch, cwd=repo)


def _read_base(git_dir: Path) -> str | None:
    try:
        return (git_dir / _BASE_FILE).read_text().strip() or None
    except OSError:
        return None


def write_skills(folder: Path, runtime: str, skills: list[SkillFile]) -> list[str]:
    """Write the job's skill files where the runtime's CLI reads them; their relative paths.

    Blocking (run it in a thread). A path that would land outside the run folder (through a
    symlink in a repository, say) is refused.
    """
    base = SKILL_FOLDERS.get(runtime, DEFAULT_SKILL_FOLDER)
    written: list[str] = []
    for skill in skills:
        relative = f"{base}/{skill.path}"
        parts = relative.split("/")
        try:
            # One level at a time, refusing symlinks, so nothing is created outside the run.
            current = folder
            for depth, part in enumerate(parts, start=1):
                current = current / part
                if current.is_symlink():
                    raise WorkspaceError(
                        f"skill file {skill.path} would be written outside the run"
                    )
                if depth < len(parts):
                    current.mkdir(exist_ok=True)
            current.write_text(skill.content, encoding="utf-8")
        except OSError as exc:
            raise WorkspaceError(f"cannot write skill file {skill.path}: {exc.strerror}") from None
        written.append(relative)
    return written


async def diff_stat(folder: RunFolder) -> str | None:
    """`git diff --stat` of the worktree against the commit it started from, new files included;
    None for a run without a worktree. Uses a scratch index, so the worktree is left as it is."""
    if folder.base is None:
        return None
    git_dir = Path((await _git("rev-parse", "--absolute-git-dir", cwd=folder.path)).strip())
    with tempfile.TemporaryDirectory(prefix="tama-diff-") as scratch:
        index = Path(scratch) / "index"
        if await asyncio.to_thread((git_dir / "index").exists):
            # Starting from the real index keeps git from hashing every unchanged file again.
            await asyncio.to_thread(shutil.copyfile, git_dir / "index", index)
        env = {"GIT_INDEX_FILE": str(index)}
        excludes = [f":(exclude,literal){path}" for path in folder.written]
        await _git("add", "-A", "--", ".", *excludes, cwd=folder.path, env=env)
        stat = await _git(
            "diff", "--cached", "--stat=200", "--no-color", folder.base, cwd=folder.path, env=env
        )
    return truncate(stat.rstrip("\n"), DIFF_STAT_LIMIT)
