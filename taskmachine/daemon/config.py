"""The machine's config file: `~/.taskmachine/config.json`, written by `tama setup`, mode 600.

It holds the machine's credentials (access token, rotating refresh token, broker password), so it
must be private: a file that others can read is refused with the `chmod` that fixes it. A release
before this one wrote `$XDG_CONFIG_HOME/taskmachine/config.json` (default `~/.config/...`); it is
read when the new file does not exist, and the next save writes the new path.

Set TASKMACHINE_HOME to move `~/.taskmachine` (config, work and state) somewhere else entirely.
Keys this release does not know are kept on load and written back on save, so an older tama never
drops what a newer one wrote.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taskmachine.daemon.detect import TOOL_NAMES

CONFIG_FILENAME = "config.json"
DEFAULT_API_URL = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """The config file cannot be used; the message is one line naming the file and the fix."""


class ConfigMissingError(ConfigError):
    """No config file at the new or the legacy path: the machine was never set up."""


def taskmachine_home() -> Path:
    """`~/.taskmachine`, or TASKMACHINE_HOME when set."""
    override = os.environ.get("TASKMACHINE_HOME", "").strip()
    if override:
        return Path(override).expanduser().absolute()
    return Path.home() / ".taskmachine"


def config_path() -> Path:
    """Where the config file lives (and where `save_config` writes)."""
    return taskmachine_home() / CONFIG_FILENAME


def legacy_config_path() -> Path:
    """Where releases before ~/.taskmachine kept the config file."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "taskmachine" / CONFIG_FILENAME


def _default_execution_root() -> Path:
    return taskmachine_home() / "work"


def _default_state_dir() -> Path:
    return taskmachine_home() / "state"


def _absolute(value: Path) -> Path:
    expanded = value.expanduser()
    if not expanded.is_absolute():
        raise ValueError(f"{str(value)!r} must be an absolute path (or start with ~)")
    return expanded


class MachineConfig(BaseModel):
    # extra="allow": unknown keys survive a load/save round trip.
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    api_url: str = DEFAULT_API_URL
    # Set by `tama setup`; None until the machine is connected.
    machine_id: uuid.UUID | None = None
    machine_name: str | None = None
    # amqp://machine-<machine_id>:<password>@host:port/ — the machine's own broker user.
    amqp_url: str | None = None
    access_token: str | None = None
    access_token_expires_at: datetime | None = None
    refresh_token: str | None = None

    execution_root: Path = Field(default_factory=_default_execution_root)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    # The most a run on this machine may do, whatever the server asks: min(server, ceiling).
    permission_ceiling: Literal["safe", "full_auto"] = "safe"
    # Workspace id -> local git repository that runs of that workspace get worktrees of.
    workspace_repos: dict[uuid.UUID, Path] = Field(default_factory=dict)
    # Tool name -> explicit executable, instead of looking it up on PATH.
    runtime_paths: dict[str, Path] = Field(default_factory=dict)
    state_dir: Path = Field(default_factory=_default_state_dir)
    # Seconds between heartbeats (the server counts a machine online for 30 s after one).
    heartbeat_interval_seconds: float = Field(default=10.0, gt=0, le=60)
    # Where `tama update` and update requests install releases from: a package index (pip's
    # --index-url) and/or a folder or page of wheels (--find-links). Only find-links set means
    # that folder alone (pip --no-index); neither set means pip's own configuration.
    update_index_url: str | None = None
    update_find_links: str | None = None

    @property
    def connected(self) -> bool:
        """True once `tama setup` stored an identity and credentials."""
        return (
            self.machine_id is not None
            and self.amqp_url is not None
            and self.refresh_token is not None
        )

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("update_index_url")
    @classmethod
    def _check_index_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "file") or not (parts.hostname or parts.path):
            raise ValueError("must be an http://, https:// or file:// URL")
        return value

    @field_validator("update_find_links")
    @classmethod
    def _check_find_links(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if urlsplit(value).scheme in ("http", "https", "file"):
            return value
        return str(_absolute(Path(value)))

    @field_validator("amqp_url")
    @classmethod
    def _check_amqp_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError("must be an amqp:// or amqps:// URL with a host")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        return value

    @field_validator("access_token_expires_at")
    @classmethod
    def _check_expiry(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
        return value.astimezone(UTC)

    @field_validator("execution_root", "state_dir")
    @classmethod
    def _check_dir(cls, value: Path) -> Path:
        return _absolute(value)

    @field_validator("workspace_repos")
    @classmethod
    def _check_repos(cls, value: dict[uuid.UUID, Path]) -> dict[uuid.UUID, Path]:
        return {workspace: _absolute(path) for workspace, path in value.items()}

    @field_validator("runtime_paths")
    @classmethod
    def _check_runtime_paths(cls, value: dict[str, Path]) -> dict[str, Path]:
        unknown = sorted(set(value) - set(TOOL_NAMES))
        if unknown:
            known = ", ".join(TOOL_NAMES)
            raise ValueError(f"unknown tool {unknown[0]!r} (known: {known})")
        return {tool: _absolute(path) for tool, path in value.items()}

    @model_validator(mode="after")
    def _check_broker_user(self) -> MachineConfig:
        # The broker confines a machine to its own queues by user name; a mismatch cannot work.
        if self.amqp_url is not None and self.machine_id is not None:
            user = urlsplit(self.amqp_url).username
            expected = f"machine-{self.machine_id}"
            if user is not None and user != expected:
                raise ValueError(f"amqp_url: broker user is {user!r}, expected {expected!r}")
        return self


def _check_private(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"{path}: has mode {mode:03o} but holds credentials and must be private; "
            f"run: chmod 600 {path}"
        )


def _read(path: Path) -> MachineConfig:
    _check_private(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text; fix it or run `tama setup`") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object, found {type(data).__name__}")
    try:
        return MachineConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        where = f"{field}: " if field else ""
        raise ConfigError(f"{path}: {where}{message}") from None


def load_config(path: Path | None = None) -> MachineConfig:
    """Read the config file (the given path, else the new path, else the legacy one).

    Raises ConfigMissingError when there is none, ConfigError when it is unusable.
    """
    candidates = [path] if path is not None else [config_path(), legacy_config_path()]
    for candidate in candidates:
        if candidate.exists():
            return _read(candidate)
    raise ConfigMissingError(
        f"{candidates[0]}: not found; run `tama setup` to connect this machine"
    )


def save_config(cfg: MachineConfig, path: Path | None = None) -> Path:
    """Write the config atomically (temp file + rename), private from the first byte.

    The file is created mode 600 and its folder mode 700; readers never see a half-written file.
    Returns the path written.
    """
    target = path if path is not None else config_path()
    folder = target.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    body = json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    # mkstemp creates the file with mode 600 (O_EXCL), so no window exists where it is readable.
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return target
