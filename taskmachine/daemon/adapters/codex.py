"""Codex: `codex exec --json … -` (prompt on stdin); a follow-up turn is `codex exec resume`.

Permissions: "safe" is the workspace-write sandbox with approvals set to never: the agent may
write in the run folder and the temp folders, nowhere else, with no network unless
`sandbox_network`, and cannot ask to escape. "full_auto" is
`--dangerously-bypass-approvals-and-sandbox`. Safe mode is given as `-c` overrides because
`exec resume` has no `--sandbox` flag. Commands run in a login shell, which resets PATH.

Always off the network except for the model API: analytics off, plugins off, and no unbounded
connection retries (else Codex retries forever when the model server is down).

Stream lines: `thread.started` (thread id = session id), `item.started` / `item.completed`
(`command_execution`, `agent_message`, `file_change`, `mcp_tool_call`, `web_search`, `error`),
`error`, `turn.completed` (usage, which on a resumed thread counts the whole thread so far) or
`turn.failed`. Codex 0.169 mostly leaves out of the stream a command that its sandbox stopped
(the model still sees the "Read-only file system" output), so such a call is missing here too.
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

_NETWORK_GUARDS = [
    # A login shell re-reads the profile and resets PATH, hiding the daemon's `tama` from
    # the agent; plain shells keep the environment the executor built.
    "-c",
    "allow_login_shell=false",
    "-c",
    "analytics.enabled=false",
    "--disable",
    "plugins",
    "--disable",
    "unbounded_connection_retries",
]
_SAFE = ["-c", 'sandbox_mode="workspace-write"', "-c", 'approval_policy="never"']
_FULL_AUTO = ["--dangerously-bypass-approvals-and-sandbox"]

# What Codex prints for each kind of failure (seen against a mock answering 401, 403, 429 with
# insufficient_quota and with rate_limit_exceeded, 404, and for bad flags / config / threads).
_AUTH = (
    re.compile(r"\b(401 Unauthorized|403 Forbidden)\b"),
    re.compile(r"Missing environment variable"),
    re.compile(r"invalid_api_key|Incorrect API key", re.I),
    re.compile(r"refresh token", re.I),
)
_QUOTA = (
    re.compile(r"Quota exceeded", re.I),
    re.compile(r"insufficient_quota"),
    re.compile(r"\b429 Too Many Requests\b"),
    re.compile(r"usage limit", re.I),
)
_CONFIG = (
    re.compile(r"^error: (unexpected argument|invalid value|the argument)", re.M),
    re.compile(r"Error loading config"),
    re.compile(r"no rollout found for thread id"),
    re.compile(r"model_not_found"),
    re.compile(r"does not exist or you do not have access"),
)


def _toml_string(value: str) -> str:
    # A JSON string literal is a valid TOML basic string for everything json.dumps emits.
    return json.dumps(value)


class CodexAdapter(Adapter):
    name = "codex"

    def __init__(self, executable: str | os.PathLike[str] = "codex") -> None:
        super().__init__(executable)

    def build(self, spec: AdapterRunSpec) -> Invocation:
        prepare_cwd_and_home(spec)
        argv = [self.executable, "exec"]
        if spec.resume_session_id:
            argv.append("resume")
        argv += ["--json", "--skip-git-repo-check", *_NETWORK_GUARDS]
        if spec.permission == "full_auto":
            argv += _FULL_AUTO
        else:
            argv += _SAFE
            if spec.sandbox_network:
                argv += ["-c", "sandbox_workspace_write.network_access=true"]
        if spec.model:
            argv += ["-m", spec.model]
        if spec.reasoning_level:
            argv += ["-c", f"model_reasoning_effort={_toml_string(spec.reasoning_level)}"]

        env = base_environment(spec)
        provider = spec.provider_overrides.codex
        if provider is not None:
            table = {
                "name": _toml_string(provider.name),
                "base_url": _toml_string(provider.base_url),
                "env_key": _toml_string(provider.env_key),
                "wire_api": '"responses"',
            }
            if spec.max_retries is not None:
                table["request_max_retries"] = str(spec.max_retries)
                table["stream_max_retries"] = str(spec.max_retries)
            inline = ",".join(f"{key}={value}" for key, value in table.items())
            argv += ["-c", f"model_provider={_toml_string(provider.name)}"]
            argv += ["-c", f"model_providers.{provider.name}={{{inline}}}"]
            if provider.api_key:
                env[provider.env_key] = provider.api_key.get_secret_value()
        if spec.home is not None:
            env["CODEX_HOME"] = str(spec.home)

        if spec.resume_session_id:
            argv.append(spec.resume_session_id)
        argv.append("-")  # read the prompt from stdin
        return Invocation(argv=argv, env=env, cwd=spec.cwd, stdin=spec.prompt.encode())

    def new_parser(self, spec: AdapterRunSpec) -> CodexStreamParser:
        return CodexStreamParser(prior_usage=spec.prior_usage if spec.resume_session_id else None)

    def classify_failure(
        self, exit_code: int | None, stderr_tail: str, result: ParsedResult
    ) -> FailureCode:
        text = f"{result.error or ''}\n{stderr_tail}"
        if has_any(text, _AUTH):
            return FailureCode.AUTH
        if has_any(text, _QUOTA):
            return FailureCode.QUOTA
        # Exit code 2 is a command-line usage error.
        if exit_code == 2 or has_any(text, _CONFIG):
            return FailureCode.CONFIG
        return FailureCode.CLI_ERROR


class CodexStreamParser(StreamParser):
    def __init__(self, prior_usage: Usage | None = None) -> None:
        # The thread's totals before this turn; set only for a resumed thread.
        self._prior = prior_usage
        self._session_id: str | None = None
        self._usage = Usage()
        self._session_usage: Usage | None = None
        self._final_text: str | None = None
        self._error: str | None = None
        self._completed = False
        self._started: set[str] = set()

    def result(self) -> ParsedResult:
        return ParsedResult(
            session_id=self._session_id,
            usage=self._usage,
            session_usage=self._session_usage,
            final_text=self._final_text,
            error=self._error,
            completed=self._completed and self._error is None,
        )

    def _on_object(self, obj: dict[str, Any]) -> list[TranscriptEvent]:
        kind = obj.get("type")
        if kind == "thread.started":
            thread_id = obj.get("thread_id")
            if isinstance(thread_id, str) and thread_id and thread_id != self._session_id:
                self._session_id = thread_id
                return [SessionEvent(session_id=thread_id)]
            return []
        if kind == "item.started":
            return self._on_item_started(obj["item"])
        if kind == "item.completed":
            return self._on_item_completed(obj["item"])
        if kind == "error":
            message = str(obj.get("message", ""))
            if message.startswith("Reconnecting"):
                # A retry in progress, not the end of the run.
                return [SystemEvent(message=message)]
            return self._fail(message)
        if kind == "turn.failed":
            error = obj.get("error") or {}
            return self._fail(str(error.get("message") or "the turn failed"))
        if kind == "turn.completed":
            return self._on_turn_completed(obj.get("usage") or {})
        return []

    def _fail(self, message: str) -> list[TranscriptEvent]:
        if message == self._error:
            return []
        self._error = message
        return [ErrorEvent(message=message)]

    def _call(self, item: dict[str, Any]) -> ToolCallEvent | None:
        item_type = item.get("type")
        call_id = str(item.get("id", ""))
        if item_type == "command_execution":
            return ToolCallEvent(
                call_id=call_id, name="shell", input={"command": item.get("command", "")}
            )
        if item_type == "file_change":
            return ToolCallEvent(
                call_id=call_id, name="apply_patch", input={"changes": item.get("changes") or []}
            )
        if item_type == "mcp_tool_call":
            arguments = item.get("arguments")
            return ToolCallEvent(
                call_id=call_id,
                name=f"{item.get('server', 'mcp')}.{item.get('tool', '')}",
                input=arguments if isinstance(arguments, dict) else {"value": arguments},
            )
        if item_type == "web_search":
            return ToolCallEvent(
                call_id=call_id, name="web_search", input={"query": item.get("query", "")}
            )
        return None

    def _on_item_started(self, item: dict[str, Any]) -> list[TranscriptEvent]:
        call = self._call(item)
        if call is None:
            return []
        self._started.add(call.call_id)
        return [call]

    def _on_item_completed(self, item: dict[str, Any]) -> list[TranscriptEvent]:
        item_type = item.get("type")
        if item_type == "agent_message":
            text = str(item.get("text", ""))
            self._final_text = text
            return [TextEvent(text=text)] if text else []
        if item_type == "error":
            # Non-fatal notices (e.g. unknown model metadata); fatal ones come as `error` lines.
            return [SystemEvent(message=str(item.get("message", "")))]
        call = self._call(item)
        if call is None:
            return []  # reasoning, todo lists: not part of the transcript
        events: list[TranscriptEvent] = []
        if call.call_id not in self._started:
            events.append(call)
        self._started.discard(call.call_id)
        events.append(_tool_result(call.call_id, item))
        return events

    def _on_turn_completed(self, raw: dict[str, Any]) -> list[TranscriptEvent]:
        reported = Usage(
            input_tokens=as_int(raw.get("input_tokens")),
            output_tokens=as_int(raw.get("output_tokens")),
            cached_input_tokens=as_int(raw.get("cached_input_tokens")),
            reasoning_tokens=as_int(raw.get("reasoning_output_tokens")),
        )
        # On a resumed thread Codex reports the thread's totals: keep this turn's share.
        run = reported if self._prior is None else reported.minus(self._prior)
        self._usage = run.model_copy(update={"cost_usd": None})
        self._session_usage = reported
        self._completed = True
        return [UsageEvent(**self._usage.model_dump())]


def _tool_result(call_id: str, item: dict[str, Any]) -> ToolResultEvent:
    status = item.get("status")
    failed = status in ("failed", "declined")
    item_type = item.get("type")
    if item_type == "command_execution":
        exit_code = item.get("exit_code")
        output = str(item.get("aggregated_output") or "")
        failed = failed or (isinstance(exit_code, int) and exit_code != 0)
    elif item_type == "file_change":
        changes = item.get("changes") or []
        output = "\n".join(
            f"{c.get('kind', 'update')} {c.get('path', '')}" for c in changes if isinstance(c, dict)
        )
    elif item_type == "mcp_tool_call":
        error = item.get("error")
        output = json.dumps(error if error else item.get("result"), ensure_ascii=False, default=str)
        failed = failed or bool(error)
    else:
        output = status if isinstance(status, str) else ""
    return ToolResultEvent(call_id=call_id, output=output, is_error=failed)
