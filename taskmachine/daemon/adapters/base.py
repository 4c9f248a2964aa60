"""What every coding-CLI adapter offers the daemon, and the parts they share.

An adapter turns one run into a process to start (`build` → `Invocation`), reads that process's
stdout line by line into the normalized transcript (`new_parser` → `StreamParser`), and says why
a failed run failed (`classify_failure` → `FailureCode`). It never starts the process itself:
the executor owns process groups, timeouts and cancellation.

The prompt goes to the CLI on stdin, never in argv: a compiled prompt can outgrow Linux's
128 KiB limit on one argument, and a prompt starting with "-" would read as a flag.
"""

from __future__ import annotations

import abc
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from taskmachine.wire.transcript import (
    FailureCode,
    SystemEvent,
    TranscriptEvent,
    Usage,
    truncate,
)

Permission = Literal["safe", "full_auto"]
_PERMISSION_RANK: dict[Permission, int] = {"safe": 0, "full_auto": 1}

# Output lines longer than this are cut (the rest of the line is dropped, not buffered).
MAX_LINE_BYTES = 8 * 1024 * 1024
# How much of an unreadable line a `system` event quotes.
_QUOTE_CHARS = 300

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InvalidRunSpec(ValueError):
    """The run cannot be built as asked (for example the run folder does not exist)."""


def effective_permission(server: Permission, ceiling: Permission) -> Permission:
    """A run's permission: the lower of what the server asks and what the daemon allows."""
    return server if _PERMISSION_RANK[server] <= _PERMISSION_RANK[ceiling] else ceiling


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/?#]+(/[^\s]*)?$", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _valid_env(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        if "\0" in text:
            raise ValueError(f"{name}: value contains a NUL byte")
    return value


class ClaudeProvider(BaseModel):
    """Where Claude Code sends model requests, passed as its environment variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ANTHROPIC_BASE_URL: the API root without /v1 (Claude posts to {base_url}/v1/messages).
    base_url: str | None = None
    # ANTHROPIC_API_KEY (sent as x-api-key) and/or ANTHROPIC_AUTH_TOKEN (sent as Bearer).
    api_key: SecretStr | None = None
    auth_token: SecretStr | None = None

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)


class CodexProvider(BaseModel):
    """A custom Codex model provider: an OpenAI Responses API at `base_url`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The API root including /v1 (Codex posts to {base_url}/responses).
    base_url: str
    # The environment variable Codex reads the key from; `api_key` (if given) is put there.
    env_key: str = "TASKMACHINE_CODEX_API_KEY"
    api_key: SecretStr | None = None
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")] = "taskmachine"

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("env_key")
    @classmethod
    def _check_env_key(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable name")
        return value


class ProviderOverrides(BaseModel):
    """Point the CLIs at a model server of your choice (from the daemon's config, or a test's
    mock). Each adapter takes its own part; `env` goes to either CLI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claude: ClaudeProvider | None = None
    codex: CodexProvider | None = None
    env: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        return _valid_env(value)


class AdapterRunSpec(BaseModel):
    """One turn of a coding CLI, as the daemon asks for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: Annotated[str, Field(min_length=1)]
    # The run folder; the CLI runs there and may write there.
    cwd: Path
    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@\[\]-]{0,199}$")] | None = None
    reasoning_level: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] | None = None
    resume_session_id: (
        Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")] | None
    ) = None
    permission: Permission = "safe"
    # Programs the agent may always run in safe mode, e.g. ["tama"] (Claude pre-approves
    # `Bash(tama:*)`; Codex's sandbox runs any program already).
    allowed_commands: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]] = (
        Field(default_factory=list, max_length=32)
    )
    # Let sandboxed commands use the network in safe mode (Codex's sandbox blocks it otherwise,
    # so `tama` could not reach the server). Claude's safe mode has no network sandbox.
    sandbox_network: bool = False
    # Extra environment for the run, e.g. the run token and API URL that `tama` reads.
    extra_env: dict[str, str] = Field(default_factory=dict, repr=False)
    # The CLI's own config/session directory (CLAUDE_CONFIG_DIR, CODEX_HOME); created if missing.
    # Keep it the same across the turns of a session, or the session cannot be resumed.
    # None: the user's own (~/.claude, ~/.codex), with their login.
    home: Path | None = None
    provider_overrides: ProviderOverrides = Field(default_factory=ProviderOverrides)
    # How often the CLI retries a failed model request (None: the CLI's default).
    max_retries: Annotated[int, Field(ge=0, le=20)] | None = None
    # The session's usage before this run (the previous run's ParsedResult.session_usage), so a
    # resumed run reports its own share of the running totals the CLIs print.
    prior_usage: Usage | None = None
    # The environment to start from (None: the daemon's own).
    base_env: dict[str, str] | None = Field(default=None, repr=False)

    @field_validator("extra_env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        return _valid_env(value)

    @field_validator("cwd", "home")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


@dataclass(frozen=True)
class Invocation:
    """The process to start: argv, its complete environment, its folder, and what to write to
    its stdin (then close it; None means /dev/null)."""

    argv: list[str]
    # Holds credentials: kept out of repr (and so out of logs).
    env: dict[str, str] = field(repr=False)
    cwd: Path
    stdin: bytes | None = field(default=None, repr=False)


class ParsedResult(BaseModel):
    """What a run's stream said once it ended."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    session_id: str | None = None
    # This run's tokens and cost.
    usage: Usage = Field(default_factory=Usage)
    # The session's running totals after this run: pass as `prior_usage` on the next turn.
    session_usage: Usage | None = None
    final_text: str | None = None
    # The CLI's own error message when it reported one.
    error: str | None = None
    # The CLI reported a finished turn without error.
    completed: bool = False
    # The HTTP status of the failed model call, and the CLI's own error category, when given.
    api_status: int | None = None
    error_kind: str | None = None


class StreamParser(abc.ABC):
    """Reads one run's stdout, a line at a time. Never raises on bad input: a line that is not
    JSON, or JSON of a shape it does not know how to read, becomes a `system` event or nothing."""

    def feed(self, line: bytes) -> list[TranscriptEvent]:
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            return []
        try:
            obj = json.loads(text)
        except ValueError:
            return [SystemEvent(message=f"unreadable output: {_quote(text)}")]
        if not isinstance(obj, dict):
            return [SystemEvent(message=f"unreadable output: {_quote(text)}")]
        try:
            return self._on_object(obj)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A known line type in an unexpected shape: say so, keep reading.
            return [SystemEvent(message=f"could not read {_quote(text)}: {exc}")]

    @abc.abstractmethod
    def _on_object(self, obj: dict[str, Any]) -> list[TranscriptEvent]: ...

    @abc.abstractmethod
    def result(self) -> ParsedResult: ...


class Adapter(abc.ABC):
    """One coding CLI: how to start a run, read its stream, and classify its failures."""

    name: ClassVar[str]

    def __init__(self, executable: str | os.PathLike[str]) -> None:
        self.executable = os.fspath(executable)

    @abc.abstractmethod
    def build(self, spec: AdapterRunSpec) -> Invocation: ...

    @abc.abstractmethod
    def new_parser(self, spec: AdapterRunSpec) -> StreamParser: ...

    @abc.abstractmethod
    def classify_failure(
        self, exit_code: int | None, stderr_tail: str, result: ParsedResult
    ) -> FailureCode: ...


# -- shared helpers ----------------------------------------------------------------------------

_SCRUBBED_ENV = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")


def base_environment(spec: AdapterRunSpec) -> dict[str, str]:
    """The environment a run starts from, without markers that make a CLI think it is nested
    inside another agent session."""
    source: Mapping[str, str] = os.environ if spec.base_env is None else spec.base_env
    env = {k: v for k, v in source.items() if k not in _SCRUBBED_ENV}
    env.update(spec.provider_overrides.env)
    env.update(spec.extra_env)
    return env


def prepare_cwd_and_home(spec: AdapterRunSpec) -> None:
    """Check the run folder exists and create the CLI's home (cheap, so done inline)."""
    if not spec.cwd.is_dir():
        raise InvalidRunSpec(f"run folder {spec.cwd} does not exist")
    if spec.home is not None:
        try:
            spec.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidRunSpec(f"cannot create the CLI home {spec.home}: {exc}") from None


def _quote(text: str) -> str:
    return truncate(text, _QUOTE_CHARS)


def as_int(value: object) -> int:
    """A token count from JSON (missing, null or junk → 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def as_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


def has_any(text: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    return any(p.search(text) for p in patterns)


@dataclass
class _LineBuffer:
    limit: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    overflowed: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - self.size
        if room <= 0:
            self.overflowed = True
            return
        if len(chunk) > room:
            chunk = chunk[:room]
            self.overflowed = True
        self.parts.append(chunk)
        self.size += len(chunk)

    def take(self) -> bytes:
        line = b"".join(self.parts)
        self.parts, self.size, self.overflowed = [], 0, False
        return line


class ByteStream(Protocol):
    """What `read_lines` needs: asyncio.StreamReader has it."""

    async def read(self, n: int = -1, /) -> bytes: ...


async def read_lines(
    stream: ByteStream, max_line_bytes: int = MAX_LINE_BYTES, chunk_size: int = 64 * 1024
) -> AsyncIterator[bytes]:
    """Lines of an asyncio stream (e.g. a subprocess's stdout), without the newline.

    Unlike `StreamReader.readline` this never fails on a long line: a line over
    `max_line_bytes` is cut there and the rest of it is dropped, so memory stays bounded.
    """
    buffer = _LineBuffer(max_line_bytes)
    while True:
        chunk = await stream.read(chunk_size)
        if not chunk:
            break
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                buffer.add(chunk[start:])
                break
            buffer.add(chunk[start:end])
            yield buffer.take()
            start = end + 1
    if buffer.size or buffer.overflowed:
        yield buffer.take()
