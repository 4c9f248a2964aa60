"""Which coding CLIs this machine has: path, version, models and reasoning levels, or why not.

`RuntimeDetector.detect()` runs on every heartbeat, so it is cheap when nothing changed: it looks
each tool up (on PATH or at its configured path) and stats it, and probes it again only when the
(found path, resolved path, mtime, size) key changed. A probe that failed is retried after
`failure_retry_seconds`, since a timeout may have been a passing load spike.

Probing never hangs the daemon and never touches the user's setup: every child runs in its own
process group under a timeout (the whole group is killed when it expires or the caller is
cancelled), with a scratch HOME / CLAUDE_CONFIG_DIR / CODEX_HOME that is deleted afterwards, a
minimal environment without credentials, and proxies pointed at a closed loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict

from taskmachine.wire.messages import ModelReport, RuntimeReport

log = logging.getLogger(__name__)

ToolName = Literal["claude", "codex"]
Provider = Literal["anthropic", "openai"]

TOOL_NAMES: tuple[ToolName, ...] = ("claude", "codex")
PROVIDERS: dict[ToolName, Provider] = {"claude": "anthropic", "codex": "openai"}

MIN_CLAUDE_VERSION = "2.0.0"
MIN_CODEX_VERSION = "0.100.0"
MIN_VERSIONS: dict[ToolName, str] = {"claude": MIN_CLAUDE_VERSION, "codex": MIN_CODEX_VERSION}

DEFAULT_PROBE_TIMEOUT = 15.0
DEFAULT_FAILURE_RETRY_SECONDS = 300.0
# A probe prints tens of kilobytes; anything past this is not one of our tools behaving.
MAX_PROBE_OUTPUT = 8 * 1024 * 1024

_REAP_GRACE_SECONDS = 2.0

NOT_ON_PATH = "not on PATH"
_VERSION_RE = re.compile(r"(?<![\w.])(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?)")
_CLAUDE_INIT_ID = "tama-detect-1"
# Connections through a proxy go to the discard port on loopback: refused at once.
_DEAD_PROXY = "http://127.0.0.1:9"
_PASSED_THROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT")


class RuntimeModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    display_name: str
    reasoning_levels: list[str]
    default_reasoning_level: str | None = None


class RuntimeInfo(BaseModel):
    """One supported tool: available (with version and models) or missing with the reason."""

    model_config = ConfigDict(frozen=True)

    name: ToolName
    provider: Provider
    path: str | None = None
    version: str | None = None
    models: list[RuntimeModel] = []
    available: bool
    reason: str | None = None

    def to_report(self) -> RuntimeReport:
        """The wire form for the heartbeat."""
        return RuntimeReport(
            name=self.name,
            provider=self.provider,
            path=self.path,
            version=self.version,
            models=[
                ModelReport(
                    id=model.id,
                    display_name=model.display_name,
                    reasoning_levels=list(model.reasoning_levels),
                    default_reasoning_level=model.default_reasoning_level,
                )
                for model in self.models
            ],
            available=self.available,
            reason=self.reason,
        )


class _ProbeFailed(Exception):
    """A child did not give a usable answer; str() is one line for the reason."""


@dataclass(frozen=True)
class _Located:
    path: str | None
    # (found path, resolved path, mtime ns, size): any change means a different binary.
    key: tuple[str, str, int, int] | None
    problem: str | None


@dataclass(frozen=True)
class _Cached:
    key: tuple[str, str, int, int]
    info: RuntimeInfo
    probed_at: float


def _first_line(*texts: bytes) -> str:
    for text in texts:
        for line in text.decode("utf-8", "replace").splitlines():
            if line.strip():
                return line.strip()[:300]
    return ""


def _locate(name: ToolName, override: Path | None, search_path: str) -> _Located:
    if override is not None:
        if not override.is_file():
            return _Located(None, None, f"configured path {override} does not exist")
        if not os.access(override, os.X_OK):
            return _Located(None, None, f"configured path {override} is not executable")
        found: str | None = str(override)
    else:
        found = shutil.which(name, path=search_path)
    if found is None:
        return _Located(None, None, NOT_ON_PATH)
    resolved = os.path.realpath(found)
    try:
        info = os.stat(resolved)
    except OSError as exc:
        return _Located(None, None, f"cannot stat {found}: {exc.strerror}")
    return _Located(found, (found, resolved, info.st_mtime_ns, info.st_size), None)


def _probe_env(scratch: Path, search_path: str) -> dict[str, str]:
    # A minimal environment: no credentials reach the child, and every place a tool keeps state
    # is inside the scratch folder that is removed after the probe.
    env = {key: os.environ[key] for key in _PASSED_THROUGH if key in os.environ}
    home = scratch / "home"
    env.update(
        PATH=search_path,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        CLAUDE_CONFIG_DIR=str(scratch / "claude"),
        CODEX_HOME=str(scratch / "codex"),
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CODE_MAX_RETRIES="0",
        DISABLE_AUTOUPDATER="1",
        NO_COLOR="1",
        TERM="dumb",
        HTTP_PROXY=_DEAD_PROXY,
        HTTPS_PROXY=_DEAD_PROXY,
        ALL_PROXY=_DEAD_PROXY,
        http_proxy=_DEAD_PROXY,
        https_proxy=_DEAD_PROXY,
        all_proxy=_DEAD_PROXY,
        NO_PROXY="",
        no_proxy="",
    )
    return env


def _make_scratch() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="tama-probe-"))
    for sub in ("home", "claude", "codex", "work"):
        (scratch / sub).mkdir(mode=0o700)
    return scratch


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _read_capped(stream: asyncio.StreamReader | None) -> bytes:
    if stream is None:
        return b""
    chunks: list[bytes] = []
    total = 0
    while chunk := await stream.read(65536):
        total += len(chunk)
        if total > MAX_PROBE_OUTPUT:
            raise _ProbeFailed(f"printed more than {MAX_PROBE_OUTPUT // (1024 * 1024)} MB")
        chunks.append(chunk)
    return b"".join(chunks)


async def _feed(stream: asyncio.StreamWriter | None, data: bytes) -> None:
    if stream is None:
        return
    # The child may exit without reading its input; that is its answer, not our error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
    stream.close()


async def _run(
    argv: list[str], *, env: dict[str, str], cwd: Path, limit: float, stdin: bytes | None = None
) -> bytes:
    """Run a probe and return its stdout; raise _ProbeFailed on a non-zero exit or timeout."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            # Its own process group, so a timeout kills whatever it started too.
            start_new_session=True,
        )
    except OSError as exc:
        raise _ProbeFailed(exc.strerror or str(exc)) from None
    finished = False
    try:
        async with asyncio.timeout(limit):
            _, stdout, stderr, returncode = await asyncio.gather(
                _feed(process.stdin, stdin or b""),
                _read_capped(process.stdout),
                _read_capped(process.stderr),
                process.wait(),
            )
        finished = True
    except TimeoutError:
        raise _ProbeFailed(f"timed out after {limit:g} s") from None
    finally:
        if not finished:
            _kill_group(process)
            # asyncio's wait() also waits for the pipes, which a grandchild that left the group
            # (setsid) could hold open for ever: give reaping a moment, never more.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_REAP_GRACE_SECONDS):
                    await asyncio.shield(process.wait())
    if returncode != 0:
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
        raise _ProbeFailed(_first_line(stderr, stdout) or how)
    return stdout


def _parse_version(output: bytes) -> str:
    match = _VERSION_RE.search(output.decode("utf-8", "replace"))
    if match is None:
        raise _ProbeFailed(f"no version number in {_first_line(output)!r}")
    return match.group(1)


def _version_key(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version(re.sub(r"[-+].*$", "", text))


def _claude_models(stdout: bytes) -> list[RuntimeModel]:
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or message.get("type") != "control_response":
            continue
        response = message.get("response") or {}
        if response.get("request_id") != _CLAUDE_INIT_ID:
            continue
        if response.get("subtype") != "success":
            raise _ProbeFailed(f"initialize failed: {response.get('error', 'no reason given')}")
        models: list[RuntimeModel] = []
        for entry in (response.get("response") or {}).get("models") or []:
            if not isinstance(entry, dict) or not entry.get("value"):
                continue
            levels = entry.get("supportedEffortLevels") or []
            models.append(
                RuntimeModel(
                    id=str(entry["value"]),
                    display_name=str(entry.get("displayName") or entry["value"]),
                    reasoning_levels=[str(level) for level in levels],
                )
            )
        return models
    raise _ProbeFailed("no answer to the initialize request")


def _codex_models(stdout: bytes) -> list[RuntimeModel]:
    try:
        catalog: Any = json.loads(stdout)
    except ValueError:
        raise _ProbeFailed(f"model catalog is not JSON: {_first_line(stdout)!r}") from None
    entries = catalog.get("models") if isinstance(catalog, dict) else None
    if not isinstance(entries, list):
        raise _ProbeFailed("model catalog has no models list")
    models: list[RuntimeModel] = []
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or not entry.get("slug")
            or entry.get("visibility") == "hide"
        ):
            continue
        levels = [
            str(level.get("effort") if isinstance(level, dict) else level)
            for level in entry.get("supported_reasoning_levels") or []
        ]
        default = entry.get("default_reasoning_level")
        models.append(
            RuntimeModel(
                id=str(entry["slug"]),
                display_name=str(entry.get("display_name") or entry["slug"]),
                reasoning_levels=levels,
                default_reasoning_level=str(default) if default else None,
            )
        )
    return models


class RuntimeDetector:
    """Detects the supported tools; keep one per daemon so the cache spans heartbeat cycles."""

    def __init__(
        self,
        *,
        runtime_paths: Mapping[str, Path] | None = None,
        search_path: str | None = None,
        timeout: float = DEFAULT_PROBE_TIMEOUT,
        failure_retry_seconds: float = DEFAULT_FAILURE_RETRY_SECONDS,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        unknown = sorted(set(runtime_paths or {}) - set(TOOL_NAMES))
        if unknown:
            raise ValueError(f"unknown tool {unknown[0]!r} in runtime_paths")
        self._overrides = dict(runtime_paths or {})
        self._search_path = search_path
        self._timeout = timeout
        self._failure_retry = failure_retry_seconds
        self._cache: dict[ToolName, _Cached] = {}
        self._lock = asyncio.Lock()

    async def detect(self) -> list[RuntimeInfo]:
        """Every supported tool, in TOOL_NAMES order; spawns nothing when nothing changed."""
        async with self._lock:
            search_path = (
                self._search_path
                if self._search_path is not None
                else os.environ.get("PATH", os.defpath)
            )
            return list(
                await asyncio.gather(*(self._detect_one(name, search_path) for name in TOOL_NAMES))
            )

    async def _detect_one(self, name: ToolName, search_path: str) -> RuntimeInfo:
        located = await asyncio.to_thread(_locate, name, self._overrides.get(name), search_path)
        if located.key is None or located.path is None:
            self._cache.pop(name, None)
            return RuntimeInfo(
                name=name, provider=PROVIDERS[name], available=False, reason=located.problem
            )
        cached = self._cache.get(name)
        if cached is not None and cached.key == located.key and not self._retry_due(cached):
            return cached.info
        info = await self._probe(name, located.path, search_path)
        self._cache[name] = _Cached(located.key, info, time.monotonic())
        return info

    def _retry_due(self, cached: _Cached) -> bool:
        failed = not cached.info.available and (cached.info.reason or "").startswith("does not run")
        return failed and time.monotonic() - cached.probed_at >= self._failure_retry

    async def _probe(self, name: ToolName, path: str, search_path: str) -> RuntimeInfo:
        provider = PROVIDERS[name]
        scratch = await asyncio.to_thread(_make_scratch)
        try:
            env = _probe_env(scratch, search_path)
            cwd = scratch / "work"
            try:
                version_out = await _run([path, "--version"], env=env, cwd=cwd, limit=self._timeout)
                version = _parse_version(version_out)
            except _ProbeFailed as exc:
                log.info("runtime %s at %s does not run: %s", name, path, exc)
                return RuntimeInfo(
                    name=name,
                    provider=provider,
                    path=path,
                    available=False,
                    reason=f"does not run: {exc}",
                )
            needed = MIN_VERSIONS[name]
            if _version_key(version) < Version(needed):
                return RuntimeInfo(
                    name=name,
                    provider=provider,
                    path=path,
                    version=version,
                    available=False,
                    reason=f"too old (found {version}, need ≥ {needed})",
                )
            try:
                if name == "claude":
                    models = await self._claude_models(path, env, cwd)
                else:
                    models = await self._codex_models(path, env, cwd)
            except _ProbeFailed as exc:
                log.info("runtime %s at %s cannot list models: %s", name, path, exc)
                return RuntimeInfo(
                    name=name,
                    provider=provider,
                    path=path,
                    version=version,
                    available=False,
                    reason=f"does not run: cannot list models: {exc}",
                )
            return RuntimeInfo(
                name=name,
                provider=provider,
                path=path,
                version=version,
                models=models,
                available=True,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def _claude_models(self, path: str, env: dict[str, str], cwd: Path) -> list[RuntimeModel]:
        # One initialize control request on stream-json answers offline with the model list;
        # closing stdin afterwards makes Claude exit without starting a turn.
        request = {
            "type": "control_request",
            "request_id": _CLAUDE_INIT_ID,
            "request": {"subtype": "initialize"},
        }
        argv = [path, "-p", "--input-format", "stream-json"]
        argv += ["--output-format", "stream-json", "--verbose"]
        stdout = await _run(
            argv,
            env=env,
            cwd=cwd,
            limit=self._timeout,
            stdin=(json.dumps(request) + "\n").encode(),
        )
        return _claude_models(stdout)

    async def _codex_models(self, path: str, env: dict[str, str], cwd: Path) -> list[RuntimeModel]:
        # --bundled skips the catalog refresh over the network; older releases lack the flag.
        try:
            stdout = await _run(
                [path, "debug", "models", "--bundled"], env=env, cwd=cwd, limit=self._timeout
            )
        except _ProbeFailed as exc:
            if "bundled" not in str(exc):
                raise
            stdout = await _run([path, "debug", "models"], env=env, cwd=cwd, limit=self._timeout)
        return _codex_models(stdout)
