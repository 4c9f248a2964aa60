"""Run an adapter's invocation for real, the way the daemon will: a child process in its own
process group, the prompt on stdin, stdout read line by line into the parser."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from taskmachine.daemon.adapters import (
    Adapter,
    AdapterRunSpec,
    ClaudeProvider,
    CodexProvider,
    ParsedResult,
    ProviderOverrides,
    read_lines,
)
from taskmachine.wire.transcript import TranscriptEvent
from tests.mockmodel.server import MockModelServer

API_KEY = "sk-mock-key"
E = TypeVar("E")


@dataclass
class CliRun:
    exit_code: int
    events: list[TranscriptEvent]
    result: ParsedResult
    stderr: str

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


def make_spec(
    tmp_path: Path, mock: MockModelServer | None, prompt: str = "Do the task.", **fields: Any
) -> AdapterRunSpec:
    """A spec for a hermetic run: run folder and CLI home under tmp_path, a minimal
    environment, the CLIs pointed at the mock, no retries."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    user_home = tmp_path / "user-home"
    user_home.mkdir(exist_ok=True)
    overrides = ProviderOverrides()
    if mock is not None:
        overrides = ProviderOverrides(
            claude=ClaudeProvider(base_url=mock.url, api_key=API_KEY),
            codex=CodexProvider(base_url=mock.openai_base_url, api_key=API_KEY),
        )
    values: dict[str, Any] = {
        "prompt": prompt,
        "cwd": run,
        "home": tmp_path / "cli-home",
        "provider_overrides": overrides,
        "max_retries": 0,
        "base_env": {"PATH": os.environ["PATH"], "HOME": str(user_home), "LANG": "C.UTF-8"},
    }
    values.update(fields)
    return AdapterRunSpec(**values)


async def run_cli(adapter: Adapter, spec: AdapterRunSpec, seconds: float = 60.0) -> CliRun:
    invocation = adapter.build(spec)
    parser = adapter.new_parser(spec)
    events: list[TranscriptEvent] = []
    process = await asyncio.create_subprocess_exec(
        *invocation.argv,
        cwd=invocation.cwd,
        env=invocation.env,
        stdin=asyncio.subprocess.PIPE
        if invocation.stdin is not None
        else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None

    async def write_prompt() -> None:
        if process.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(invocation.stdin or b"")
            await process.stdin.drain()
        process.stdin.close()

    async def read_stdout() -> None:
        assert process.stdout is not None
        async for line in read_lines(process.stdout):
            events.extend(parser.feed(line))

    stderr_task = asyncio.ensure_future(process.stderr.read())
    try:
        await asyncio.wait_for(asyncio.gather(write_prompt(), read_stdout()), seconds)
        exit_code = await asyncio.wait_for(process.wait(), seconds)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise AssertionError(f"{invocation.argv[0]} did not finish within {seconds} s") from None
    stderr = (await stderr_task).decode("utf-8", errors="replace")
    return CliRun(exit_code=exit_code, events=events, result=parser.result(), stderr=stderr[-4000:])


FAKES = Path(__file__).parent / "fakes"


def install_fake(tmp_path: Path, script: str, name: str) -> Path:
    """A fake program from tests/adapters/fakes copied to `tmp_path/bin/name`, executable."""
    target = tmp_path / "bin" / name
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(FAKES / script, target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR)
    return target


def exists(path: Path) -> bool:
    """A file check for async tests (tiny, so no thread needed)."""
    return path.exists()
