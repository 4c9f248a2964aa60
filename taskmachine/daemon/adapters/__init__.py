"""Adapters for the coding CLIs the daemon drives: argv and environment, stream parsing into the
normalized transcript (`taskmachine.wire.transcript`), session resume, failure classification.

    adapter = get_adapter("claude", "/usr/local/bin/claude")
    invocation = adapter.build(spec)              # argv, env, cwd, stdin (the prompt)
    parser = adapter.new_parser(spec)
    async for line in read_lines(process.stdout):
        events = parser.feed(line)                # -> list[TranscriptEvent]
    result = parser.result()                      # session id, usage, final text, error
    code = adapter.classify_failure(exit_code, stderr_tail, result)   # on failure
"""

from __future__ import annotations

import os

from taskmachine.daemon.adapters.base import (
    MAX_LINE_BYTES,
    Adapter,
    AdapterRunSpec,
    ClaudeProvider,
    CodexProvider,
    InvalidRunSpec,
    Invocation,
    ParsedResult,
    Permission,
    ProviderOverrides,
    StreamParser,
    effective_permission,
    read_lines,
)
from taskmachine.daemon.adapters.claude import ClaudeAdapter, ClaudeStreamParser
from taskmachine.daemon.adapters.codex import CodexAdapter, CodexStreamParser

ADAPTERS: dict[str, type[ClaudeAdapter] | type[CodexAdapter]] = {
    ClaudeAdapter.name: ClaudeAdapter,
    CodexAdapter.name: CodexAdapter,
}


def get_adapter(name: str, executable: str | os.PathLike[str] | None = None) -> Adapter:
    """The adapter for a runtime name ("claude" or "codex"), running `executable` (default:
    the name, looked up on PATH)."""
    try:
        cls = ADAPTERS[name]
    except KeyError:
        raise ValueError(f"no adapter for runtime {name!r} (known: claude, codex)") from None
    return cls(executable if executable is not None else name)


__all__ = [
    "ADAPTERS",
    "MAX_LINE_BYTES",
    "Adapter",
    "AdapterRunSpec",
    "ClaudeAdapter",
    "ClaudeProvider",
    "ClaudeStreamParser",
    "CodexAdapter",
    "CodexProvider",
    "CodexStreamParser",
    "InvalidRunSpec",
    "Invocation",
    "ParsedResult",
    "Permission",
    "ProviderOverrides",
    "StreamParser",
    "effective_permission",
    "get_adapter",
    "read_lines",
]
