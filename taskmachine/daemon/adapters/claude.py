"""Claude Code: `claude -p --output-format stream-json --verbose`, prompt on stdin.

Permissions: "safe" is `--permission-mode acceptEdits`: file edits and file-creating shell
commands inside the run folder are allowed; anything outside it, or any command Claude would ask
about, is denied since nobody answers prompts in -p mode; `allowed_commands` are pre-approved as
`Bash(name:*)`. "full_auto" is `bypassPermissions`, which refuses to run as root unless
IS_SANDBOX=1 (set when the daemon runs as root).

Stream lines: `system`/`init` (session id), `assistant` (one content block a line: text or
tool_use; an API failure comes as a synthetic assistant line with `error`), `user` (tool_result),
`result` (usage, `total_cost_usd` (cumulative over a resumed session), `is_error`,
`api_error_status`, final `result` text).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from taskmachine.daemon.adapters.base import (
    Adapter,
    AdapterRunSpec,
    Invocation,
    ParsedResult,
    StreamParser,
    as_float,
    as_int,
    base_environment,
    has_any,
    prepare_cwd_and_home,
)
from taskmachine.wire.transcript import (
    ErrorEvent,
    FailureCode,
    SessionEvent,
    SystemEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    TranscriptEvent,
    Usage,
    UsageEvent,
)

_PERMISSION_MODES = {"safe": "acceptEdits", "full_auto": "bypassPermissions"}

# What Claude Code prints for each kind of failure (seen against a mock answering 401, 403,
# 429, 404, a low credit balance, and for bad flags / unknown sessions / bypass as root).
_AUTH = (
    re.compile(r"Failed to authenticate", re.I),
    re.compile(r"Not logged in"),
    re.compile(r"Invalid API key", re.I),
    re.compile(r"OAuth token (has expired|has been revoked)", re.I),
)
_QUOTA = (
    re.compile(r"credit balance is too low", re.I),
    re.compile(r"usage limit", re.I),
    re.compile(r"Request rejected \(429\)"),
    re.compile(r"rate_limit_error"),
)
_CONFIG = (
    re.compile(r"^error: (unknown option|option '.*' argument|too many arguments)", re.M),
    re.compile(r"^error: missing required argument", re.M),
    re.compile(r"cannot be used with root/sudo privileges"),
    re.compile(r"No conversation found with session ID"),
    re.compile(r"--resume requires a valid session ID"),
    re.compile(r"requires --verbose"),
    re.compile(r"issue with the selected model", re.I),
)


class ClaudeAdapter(Adapter):
    name = "claude"

    def __init__(
        self, executable: str | os.PathLike[str] = "claude", *, running_as_root: bool | None = None
    ) -> None:
        super().__init__(executable)
        if running_as_root is None:
            running_as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self.running_as_root = running_as_root

    def build(self, spec: AdapterRunSpec) -> Invocation:
        prepare_cwd_and_home(spec)
        argv = [self.executable, "-p", "--output-format", "stream-json", "--verbose"]
        argv += ["--permission-mode", _PERMISSION_MODES[spec.permission]]
        if spec.model:
            argv += ["--model", spec.model]
        if spec.reasoning_level:
            argv += ["--effort", spec.reasoning_level]
        if spec.resume_session_id:
            argv += ["--resume", spec.resume_session_id]
        for command in spec.allowed_commands:
            argv += ["--allowedTools", f"Bash({command}:*)"]

        env = base_environment(spec)
        provider = spec.provider_overrides.claude
        if provider is not None:
            if provider.base_url:
                env["ANTHROPIC_BASE_URL"] = provider.base_url
            if provider.api_key:
                env["ANTHROPIC_API_KEY"] = provider.api_key.get_secret_value()
            if provider.auth_token:
                env["ANTHROPIC_AUTH_TOKEN"] = provider.auth_token.get_secret_value()
        # Set last so neither the daemon's environment nor the run's can turn them off.
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
        if spec.max_retries is not None:
            env["CLAUDE_CODE_MAX_RETRIES"] = str(spec.max_retries)
        if spec.home is not None:
            env["CLAUDE_CONFIG_DIR"] = str(spec.home)
        if spec.permission == "full_auto" and self.running_as_root:
            env["IS_SANDBOX"] = "1"
        return Invocation(argv=argv, env=env, cwd=spec.cwd, stdin=spec.prompt.encode())

    def new_parser(self, spec: AdapterRunSpec) -> ClaudeStreamParser:
        return ClaudeStreamParser(prior_usage=spec.prior_usage if spec.resume_session_id else None)

    def classify_failure(
        self, exit_code: int | None, stderr_tail: str, result: ParsedResult
    ) -> FailureCode:
        kind, status = result.error_kind, result.api_status
        text = f"{result.error or ''}\n{stderr_tail}"
        if kind == "authentication_failed" or status in (401, 403) or has_any(text, _AUTH):
            return FailureCode.AUTH
        if kind in ("rate_limit", "billing_error") or status in (402, 429) or has_any(text, _QUOTA):
            return FailureCode.QUOTA
        if kind == "model_not_found" or status == 404 or has_any(text, _CONFIG):
            return FailureCode.CONFIG
        return FailureCode.CLI_ERROR


class ClaudeStreamParser(StreamParser):
    def __init__(self, prior_usage: Usage | None = None) -> None:
        self._prior = prior_usage
        self._session_id: str | None = None
        self._usage = Usage()
        self._session_usage: Usage | None = None
        self._final_text: str | None = None
        self._error: str | None = None
        self._completed = False
        self._api_status: int | None = None
        self._error_kind: str | None = None

    def result(self) -> ParsedResult:
        return ParsedResult(
            session_id=self._session_id,
            usage=self._usage,
            session_usage=self._session_usage,
            final_text=self._final_text,
            error=self._error,
            completed=self._completed,
            api_status=self._api_status,
            error_kind=self._error_kind,
        )

    def _on_object(self, obj: dict[str, Any]) -> list[TranscriptEvent]:
        kind = obj.get("type")
        if kind == "system":
            return self._on_system(obj)
        if kind == "assistant":
            return self._on_assistant(obj)
        if kind == "user":
            return self._on_user(obj)
        if kind == "result":
            return self._on_result(obj)
        # Other line types (stream events, hooks, suggestions) carry nothing for the transcript.
        return []

    def _session(self, session_id: object) -> list[TranscriptEvent]:
        if not isinstance(session_id, str) or not session_id or session_id == self._session_id:
            return []
        self._session_id = session_id
        return [SessionEvent(session_id=session_id)]

    def _fail(self, message: str) -> list[TranscriptEvent]:
        if message == self._error:
            return []
        self._error = message
        return [ErrorEvent(message=message)]

    def _on_system(self, obj: dict[str, Any]) -> list[TranscriptEvent]:
        subtype = obj.get("subtype")
        if subtype == "init":
            return self._session(obj.get("session_id"))
        if subtype == "permission_denied":
            tool = obj.get("tool_name") or "a tool"
            return [SystemEvent(message=f"permission denied for {tool}: {obj.get('message', '')}")]
        if subtype == "api_retry":
            return [SystemEvent(message=f"retrying the model request: {_compact(obj)}")]
        return []

    def _on_assistant(self, obj: dict[str, Any]) -> list[TranscriptEvent]:
        message = obj.get("message") or {}
        blocks = message.get("content") or []
        if obj.get("error") or obj.get("is_api_error_message"):
            # A synthetic message that reports a failed model call (401, 429, …).
            self._error_kind = str(obj.get("error") or "") or None
            if isinstance(obj.get("api_error_status"), int):
                self._api_status = obj["api_error_status"]
            text = " ".join(b.get("text", "") for b in blocks if b.get("type") == "text")
            return self._fail(text.strip() or f"model request failed ({self._error_kind})")
        events: list[TranscriptEvent] = []
        for block in blocks:
            block_type = block.get("type")
            if block_type == "text" and block.get("text"):
                events.append(TextEvent(text=block["text"]))
            elif block_type == "tool_use":
                tool_input = block.get("input")
                events.append(
                    ToolCallEvent(
                        call_id=str(block.get("id", "")),
                        name=str(block.get("name", "")),
                        input=tool_input if isinstance(tool_input, dict) else {"value": tool_input},
                    )
                )
        return events

    def _on_user(self, obj: dict[str, Any]) -> list[TranscriptEvent]:
        content = (obj.get("message") or {}).get("content")
        if not isinstance(content, list):
            return []
        return [
            ToolResultEvent(
                call_id=str(block.get("tool_use_id", "")),
                output=_tool_output(block.get("content")),
                is_error=bool(block.get("is_error")),
            )
            for block in content
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]

    def _on_result(self, obj: dict[str, Any]) -> list[TranscriptEvent]:
        events = self._session(obj.get("session_id"))
        raw = obj.get("usage") or {}
        cache_read = as_int(raw.get("cache_read_input_tokens"))
        cache_write = as_int(raw.get("cache_creation_input_tokens"))
        details = raw.get("output_tokens_details") or {}
        total_cost = as_float(obj.get("total_cost_usd"))
        run_cost = total_cost
        if total_cost is not None and self._prior is not None and self._prior.cost_usd is not None:
            # total_cost_usd covers the whole resumed session; keep this run's share.
            run_cost = max(total_cost - self._prior.cost_usd, 0.0)
        run = Usage(
            input_tokens=as_int(raw.get("input_tokens")) + cache_read + cache_write,
            output_tokens=as_int(raw.get("output_tokens")),
            cached_input_tokens=cache_read,
            reasoning_tokens=as_int(details.get("thinking_tokens")),
            cost_usd=run_cost,
        )
        self._usage = run
        session = run if self._prior is None else self._prior.plus(run)
        self._session_usage = session.model_copy(update={"cost_usd": total_cost})
        events.append(UsageEvent(**run.model_dump()))

        if isinstance(obj.get("api_error_status"), int):
            self._api_status = obj["api_error_status"]
        is_error = bool(obj.get("is_error")) or obj.get("subtype") not in (None, "success")
        text = obj.get("result")
        if not is_error:
            self._completed = True
            self._final_text = text if isinstance(text, str) else None
            return events
        errors = obj.get("errors")
        if isinstance(errors, list) and errors:
            message = "; ".join(str(e) for e in errors)
        elif isinstance(text, str) and text:
            message = text
        else:
            message = f"claude ended with {obj.get('subtype', 'an error')}"
        return events + self._fail(message)


def _tool_output(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for item in content:
            if isinstance(item, dict) and item.get("type") == "text":
                parts.append(str(item.get("text", "")))
            elif isinstance(item, dict) and item.get("type") == "image":
                parts.append("[image]")
            else:
                parts.append(_compact(item))
        return "\n".join(parts)
    return "" if content is None else _compact(content)


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:2000]
