"""One run attempt, end to end: folder → CLI process → transcript → finished report.

Events, numbered per attempt (`seq`): started (0), output batches (1, 2, …), finished (last).
Each goes through the publisher, so it is in the spool before anything is sent.

Outcomes:
    succeeded   the CLI exited 0 and its stream reported a finished turn
    failed      anything else; failure_code from the adapter (cli_error, auth, quota, config), or
                workspace_error, spawn_failed, daemon_stopped (drained while running);
                `error` is the last 2 KB of the error output
    cancelled   cancelled by the server (SIGTERM to the group, SIGKILL after the grace)
    timeout     the hard limit or the idle limit was reached (failure_code "timeout")
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from taskmachine.daemon.adapters import (
    Adapter,
    AdapterRunSpec,
    InvalidRunSpec,
    Invocation,
    Permission,
    ProviderOverrides,
    StreamParser,
    effective_permission,
)
from taskmachine.daemon.executor.output import OutputBatcher
from taskmachine.daemon.executor.spool import RunEvent
from taskmachine.daemon.executor.supervisor import (
    ERROR_TAIL_BYTES,
    ProcessResult,
    SpawnError,
    StopReason,
    Supervisor,
)
from taskmachine.daemon.executor.workspace import (
    RunFolder,
    WorkspaceError,
    diff_stat,
    prepare_run_folder,
)
from taskmachine.wire.runs import RunFinished, RunJob, RunOutput, RunStarted

log = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "cancelled", "timeout"]
Emit = Callable[[RunEvent], Awaitable[None]]

# Runs may call `tama`; it gets the run's token, not the machine's.
_SCRUBBED_PREFIX = "TASKMACHINE_"
# Where each CLI keeps its login in the user's own home, linked into an isolated CLI home.
_LOGIN_FILES = {
    "claude": (".claude/.credentials.json", ".credentials.json"),
    "codex": (".codex/auth.json", "auth.json"),
}


@dataclass(frozen=True)
class RunSettings:
    """What every run on this machine shares (from the daemon's config)."""

    execution_root: Path
    # Per-subject CLI homes live here (None: the user's own ~/.claude and ~/.codex).
    cli_homes: Path | None
    permission_ceiling: Permission
    workspace_repos: dict[uuid.UUID, Path]
    provider_overrides: ProviderOverrides
    max_retries: int | None = None
    # The environment runs start from (None: the daemon's own).
    base_env: dict[str, str] | None = None
    # Put first on the runs' PATH, so the agent finds this `tama`.
    tama_bin_dir: Path = Path(sys.executable).parent


@dataclass(frozen=True)
class _Ending:
    outcome: Outcome
    exit_code: int | None = None
    failure_code: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Prepared:
    folder: RunFolder
    spec: AdapterRunSpec
    invocation: Invocation


def _tail(text: str, limit: int = ERROR_TAIL_BYTES) -> str | None:
    text = text.strip()
    if not text:
        return None
    data = text.encode("utf-8")
    return data[-limit:].decode("utf-8", errors="ignore") if len(data) > limit else text


def _now() -> datetime:
    return datetime.now(UTC)


class Run:
    """One attempt. `execute()` returns after the finished event is in the spool."""

    def __init__(
        self,
        job: RunJob,
        adapter: Adapter | None,
        settings: RunSettings,
        emit: Emit,
        *,
        on_spawn: Callable[[int | None], Awaitable[None]] | None = None,
        adapter_error: str | None = None,
    ) -> None:
        self.job = job
        self._adapter = adapter
        self._adapter_error = adapter_error
        self._settings = settings
        self._emit = emit
        self._on_spawn = on_spawn
        self._seq = 0
        self._stop_reason: StopReason | None = None
        self._supervisor: Supervisor | None = None
        self._parser: StreamParser | None = None
        self.folder: RunFolder | None = None
        self.finished: RunFinished | None = None
        self._early: asyncio.Task[_Prepared | _Ending] | None = None

    @property
    def key(self) -> tuple[uuid.UUID, int]:
        return (self.job.run_id, self.job.attempt)

    def stop(self, reason: StopReason) -> None:
        """Cancel or drain: stops the process if it runs, or keeps it from starting."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._supervisor is not None:
            self._supervisor.stop(reason)

    def _next_seq(self) -> int:
        seq, self._seq = self._seq, self._seq + 1
        return seq

    async def _send_output(self, events: list[dict[str, Any]]) -> None:
        job = self.job
        await self._emit(
            RunOutput(
                run_id=job.run_id,
                attempt=job.attempt,
                seq=self._next_seq(),
                sent_at=_now(),
                events=events,
            )
        )

    async def execute(self) -> RunFinished:
        job = self.job
        await self._emit(
            RunStarted(run_id=job.run_id, attempt=job.attempt, seq=self._next_seq(), sent_at=_now())
        )
        try:
            ending = await self._work()
        except Exception as exc:
            # A bug or a broken spool must still end the run with a report, not leave it hanging.
            log.exception("run %s failed inside the daemon", job.run_id)
            ending = _Ending("failed", failure_code="daemon_error", error=type(exc).__name__)
        stat: str | None = None
        if self.folder is not None and self.folder.base is not None:
            try:
                stat = await diff_stat(self.folder)
            except WorkspaceError as exc:
                log.warning("run %s: no diff stat: %s", job.run_id, exc)
        finished = RunFinished(
            run_id=job.run_id,
            attempt=job.attempt,
            seq=self._next_seq(),
            sent_at=_now(),
            outcome=ending.outcome,
            exit_code=ending.exit_code,
            failure_code=ending.failure_code,
            error=ending.error,
            diff_stat=stat,
            **self._parsed_fields(),
        )
        await self._emit(finished)
        self.finished = finished
        return finished

    def _parsed_fields(self) -> dict[str, Any]:
        if self._parser is None:
            return {}
        result = self._parser.result()
        return {
            "session_id": result.session_id,
            "usage": result.usage.model_dump(mode="json"),
            "cost_usd": result.usage.cost_usd,
        }

    def prepare_early(self) -> None:
        """Start on the folder and the CLI's invocation while the claim is out. Only for a plain
        folder without skill files: making that is idempotent and changes nothing another run
        of the subject relies on, so a refused claim leaves nothing that matters. A worktree
        (and skill files) wait for the claim, and for an older attempt here to stop."""
        if self._early is not None or self._adapter is None or self.job.skills:
            return
        if self._settings.workspace_repos.get(self.job.workspace_id) is not None:
            return
        self._early = asyncio.create_task(self._prepare())
        # A refused claim never awaits it; its outcome is not an error worth logging.
        self._early.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _prepare(self) -> _Prepared | _Ending:
        job = self.job
        assert self._adapter is not None
        try:
            folder = await prepare_run_folder(
                self._settings.execution_root,
                job,
                self._settings.workspace_repos.get(job.workspace_id),
            )
        except WorkspaceError as exc:
            return _Ending("failed", failure_code="workspace_error", error=str(exc))
        try:
            spec = self._spec(folder.path)
            invocation = self._adapter.build(spec)
        except (ValidationError, InvalidRunSpec, ValueError) as exc:
            return _Ending("failed", failure_code="config", error=_tail(str(exc)))
        return _Prepared(folder, spec, invocation)

    async def _work(self) -> _Ending:
        if self._stop_reason is not None:
            return self._stopped_before_start()
        if self._adapter is None:
            return _Ending("failed", failure_code="spawn_failed", error=self._adapter_error)
        prepared = await (self._early if self._early is not None else self._prepare())
        if isinstance(prepared, _Ending):
            return prepared
        self.folder, spec, invocation = prepared.folder, prepared.spec, prepared.invocation
        if self._stop_reason is not None:
            return self._stopped_before_start()
        self._parser = self._adapter.new_parser(spec)
        return await self._supervise(invocation, self._parser)

    def _stopped_before_start(self) -> _Ending:
        if self._stop_reason == "cancel":
            return _Ending("cancelled")
        return _Ending(
            "failed",
            failure_code="daemon_stopped",
            error="the daemon stopped before the run started",
        )

    async def _supervise(self, invocation: Invocation, parser: StreamParser) -> _Ending:
        assert self._adapter is not None
        limits = self.job.limits
        batcher = OutputBatcher(self._send_output)

        async def on_line(line: bytes) -> None:
            await batcher.add(parser.feed(line))

        supervisor = Supervisor(
            invocation,
            hard_timeout=limits.hard_timeout_seconds,
            idle_timeout=limits.idle_timeout_seconds,
            grace=limits.cancel_grace_seconds,
            on_line=on_line,
            on_spawn=self._on_spawn,
        )
        self._supervisor = supervisor
        if self._stop_reason is not None:
            supervisor.stop(self._stop_reason)
        try:
            result = await supervisor.run()
        except SpawnError as exc:
            return _Ending("failed", failure_code="spawn_failed", error=str(exc))
        finally:
            await batcher.close()
            if self._on_spawn is not None:
                await self._on_spawn(None)
        return self._ending(result, parser)

    def _ending(self, result: ProcessResult, parser: StreamParser) -> _Ending:
        assert self._adapter is not None
        limits = self.job.limits
        code = result.exit_code
        parsed = parser.result()
        if result.stopped_by == "cancel":
            return _Ending("cancelled", exit_code=code)
        if result.stopped_by == "hard_timeout":
            return _Ending(
                "timeout",
                code,
                "timeout",
                f"the run exceeded its {limits.hard_timeout_seconds:g} s limit",
            )
        if result.stopped_by == "idle_timeout":
            return _Ending(
                "timeout", code, "timeout", f"no output for {limits.idle_timeout_seconds:g} s"
            )
        if result.stopped_by == "drain":
            return _Ending(
                "failed", code, "daemon_stopped", "the daemon stopped while the run was in progress"
            )
        if code == 0 and parsed.completed:
            return _Ending("succeeded", exit_code=0)
        failure = self._adapter.classify_failure(code, result.stderr_tail, parsed)
        # The CLI's own message last, so the 2 KB tail keeps it.
        parts = [result.stderr_tail.strip(), (parsed.error or "").strip()]
        if code == 0:
            parts.append("the CLI exited without finishing its turn")
        elif code is not None and code < 0:
            parts.append(f"the CLI was killed by signal {-code}")
        error = _tail("\n".join(p for p in parts if p)) or f"the CLI exited with status {code}"
        return _Ending("failed", code, failure.value, error)

    def _spec(self, cwd: Path) -> AdapterRunSpec:
        job, settings = self.job, self._settings
        assert self._adapter is not None
        home = None
        if settings.cli_homes is not None:
            home = (
                settings.cli_homes
                / str(job.workspace_id)
                / str(job.subject_id)
                / self._adapter.name
            )
            _link_login(self._adapter.name, home, settings.base_env)
        return AdapterRunSpec(
            prompt=job.prompt,
            cwd=cwd,
            model=job.model,
            reasoning_level=job.reasoning_level,
            resume_session_id=job.resume_session_id,
            permission=effective_permission(job.permission, settings.permission_ceiling),
            allowed_commands=["tama"],
            # `tama` inside the run must reach the server, also from Codex's sandbox.
            sandbox_network=True,
            extra_env={
                "TASKMACHINE_RUN_TOKEN": job.run_token,
                "TASKMACHINE_API_URL": job.api_url,
                "TASKMACHINE_RUN_ID": str(job.run_id),
            },
            home=home,
            provider_overrides=settings.provider_overrides,
            max_retries=settings.max_retries,
            base_env=run_base_env(settings),
        )


def run_base_env(settings: RunSettings) -> dict[str, str]:
    """The daemon's environment without its own TASKMACHINE_* settings, `tama` first on PATH."""
    source = os.environ if settings.base_env is None else settings.base_env
    env = {k: v for k, v in source.items() if not k.startswith(_SCRUBBED_PREFIX)}
    path = env.get("PATH", os.defpath)
    env["PATH"] = os.pathsep.join([str(settings.tama_bin_dir), path])
    return env


def _link_login(runtime: str, home: Path, base_env: dict[str, str] | None) -> None:
    """An isolated CLI home still uses the user's login: link their credentials file into it."""
    files = _LOGIN_FILES.get(runtime)
    user_home = (base_env or os.environ).get("HOME")
    if files is None or not user_home:
        return
    source, target = Path(user_home) / files[0], home / files[1]
    try:
        home.mkdir(parents=True, exist_ok=True)
        if source.is_file() and not target.exists() and not target.is_symlink():
            target.symlink_to(source)
    except OSError as exc:
        log.warning("cannot link the %s login into %s: %s", runtime, home, exc.strerror)
