"""Install another tama release into this daemon's own environment, and prove it took.

`install_release` runs `python -m pip install --upgrade taskmachine[==X]` with the interpreter
that runs tama (so the same virtualenv gets it), from the configured index and/or wheel folder.
Dependencies are resolved, not skipped (no --no-deps): a release that raises a pin must get it,
and pip's default "only-if-needed" strategy leaves satisfied ones alone, so an offline wheel
folder works as long as the dependencies are already installed. The result is checked by
importing taskmachine in a fresh interpreter, since this process still has the old code loaded.

A daemon that installed a release exits with exit_codes.RESTART_FOR_UPDATE (75); its startup
service restarts it on the new code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from taskmachine import __version__
from taskmachine.daemon.config import MachineConfig

log = logging.getLogger(__name__)

DISTRIBUTION = "taskmachine"
PIP_TIMEOUT = 600.0
VERIFY_TIMEOUT = 60.0
_OUTPUT_LIMIT = 256 * 1024


class UpdateError(Exception):
    """The release could not be installed or did not verify; str() is one line saying why."""


@dataclass(frozen=True)
class UpdateResult:
    previous: str
    installed: str

    @property
    def changed(self) -> bool:
        return self.previous != self.installed


def check_version(text: str) -> str:
    """The version if pip can pin it, else UpdateError."""
    try:
        Version(text)
    except InvalidVersion:
        raise UpdateError(f"{text!r} is not a version number") from None
    return text


def pip_command(cfg: MachineConfig, version: str | None, python: str = sys.executable) -> list[str]:
    """The pip invocation that installs `version` (or the newest) from the configured sources."""
    requirement = f"{DISTRIBUTION}=={version}" if version else DISTRIBUTION
    argv = [python, "-m", "pip", "install", "--upgrade", "--disable-pip-version-check"]
    argv += ["--no-input", "--progress-bar", "off"]
    if cfg.update_index_url:
        argv += ["--index-url", cfg.update_index_url]
    elif cfg.update_find_links:
        argv.append("--no-index")
    if cfg.update_find_links:
        argv += ["--find-links", cfg.update_find_links]
    argv.append(requirement)
    return argv


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("ERROR:"):
            return line.removeprefix("ERROR:").strip()
    return lines[-1] if lines else "no output"


async def _run(argv: list[str], limit: float) -> tuple[int, str]:
    """Run a child in its own process group; its exit status and combined output."""
    env = dict(os.environ, PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        # Not the caller's folder: a source checkout there would shadow what pip installed.
        cwd=tempfile.gettempdir(),
        start_new_session=True,
    )
    finished = False
    try:
        async with asyncio.timeout(limit):
            assert process.stdout is not None
            output = b""
            while chunk := await process.stdout.read(65536):
                # Keep the end: that is where pip says what went wrong.
                output = (output + chunk)[-_OUTPUT_LIMIT:]
            returncode = await process.wait()
        finished = True
    except TimeoutError:
        raise UpdateError(f"{argv[2]} timed out after {limit:g} s") from None
    finally:
        if not finished:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await asyncio.shield(process.wait())
    return returncode, output.decode("utf-8", "replace")


async def installed_version(python: str = sys.executable) -> str:
    """The taskmachine version a fresh interpreter imports (not the one loaded here)."""
    code, output = await _run(
        [python, "-I", "-c", "import taskmachine; print(taskmachine.__version__)"],
        VERIFY_TIMEOUT,
    )
    if code != 0:
        raise UpdateError(f"the installed release does not import: {_last_error(output)}")
    return output.strip().splitlines()[-1].strip() if output.strip() else ""


async def install_release(
    cfg: MachineConfig, version: str | None, *, python: str = sys.executable
) -> UpdateResult:
    """Install `version` (None: the newest available) and verify it; raises UpdateError."""
    if version is not None:
        check_version(version)
    previous = __version__
    argv = pip_command(cfg, version, python)
    log.info("installing %s: %s", version or "the newest release", " ".join(argv[1:]))
    code, output = await _run(argv, PIP_TIMEOUT)
    if code != 0:
        raise UpdateError(f"pip exit {code}: {_last_error(output)}")
    found = await installed_version(python)
    if version is not None and found != version:
        raise UpdateError(f"installed {version} but Python imports {found or 'nothing'}")
    log.info("taskmachine %s installed (was %s)", found, previous)
    return UpdateResult(previous=previous, installed=found)
