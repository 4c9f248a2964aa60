"""The normalized transcript of a run: what Claude Code or Codex did, in one shape for both.

The daemon's adapters turn each CLI's JSON stream into `TranscriptEvent`s; the daemon streams
them to the server and the server stores and shows them. Every event is small and bounded (long
texts and tool outputs are cut with a marker), so one chatty tool cannot bloat a run record.

Kinds (the `kind` field discriminates):

- `text`        the agent's prose (`text`)
- `tool_call`   the agent asked a tool to run (`call_id`, `name`, `input`)
- `tool_result` what the tool returned (`call_id`, `output`, `is_error`)
- `usage`       tokens and cost of this run (`Usage` fields)
- `session`     the CLI session id, for resuming on the next turn (`session_id`)
- `error`       the CLI reported a failure (`message`)
- `system`      anything else worth a line: a permission denial, a retry, unreadable output

`FailureCode` is the agent-side failure classification a failed run carries.
Imports: the standard library and pydantic only.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

# Bounds on what one event may carry (characters). Above them the text is cut with a marker.
TEXT_LIMIT = 64_000
TOOL_OUTPUT_LIMIT = 16_000
TOOL_INPUT_LIMIT = 16_000
MESSAGE_LIMIT = 4_000


class FailureCode(StrEnum):
    """Why the coding CLI failed, as far as the run's own output tells."""

    # Anything else (crash, server error, network): worth one retry.
    CLI_ERROR = "cli_error"
    # The model provider refused the credentials (401/403, not logged in): retrying cannot help.
    AUTH = "auth"
    # Rate limit, quota or billing (429, credit balance): retrying now cannot help.
    QUOTA = "quota"
    # Bad model, bad flag, unknown session, refused permission mode: fix the setup first.
    CONFIG = "config"

    @property
    def retryable(self) -> bool:
        return self is FailureCode.CLI_ERROR


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with a marker that says how much went."""
    if len(text) <= limit:
        return text
    marker = f"\n… [truncated {len(text) - limit} characters]"
    keep = max(limit - len(marker), 0)
    return text[:keep] + marker[: limit - keep]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TextEvent(_Event):
    kind: Literal["text"] = "text"
    text: str

    @field_validator("text")
    @classmethod
    def _bound(cls, value: str) -> str:
        return truncate(value, TEXT_LIMIT)


class ToolCallEvent(_Event):
    kind: Literal["tool_call"] = "tool_call"
    call_id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def _bound(cls, value: dict[str, Any]) -> dict[str, Any]:
        encoded = json.dumps(value, ensure_ascii=False, default=str)
        if len(encoded) <= TOOL_INPUT_LIMIT:
            return value
        # Too big to keep as structure: keep the head of its JSON text instead.
        return {"truncated_json": truncate(encoded, TOOL_INPUT_LIMIT)}


class ToolResultEvent(_Event):
    kind: Literal["tool_result"] = "tool_result"
    call_id: str
    output: str = ""
    is_error: bool = False

    @field_validator("output")
    @classmethod
    def _bound(cls, value: str) -> str:
        return truncate(value, TOOL_OUTPUT_LIMIT)


class Usage(BaseModel):
    """Token counts and cost. `input_tokens` includes the cached ones; `output_tokens` includes
    the reasoning ones. `cost_usd` is None when the CLI does not report a price (Codex)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)

    def plus(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cost_usd=_add_cost(self.cost_usd, other.cost_usd),
        )

    def minus(self, other: Usage) -> Usage:
        """`self - other`, floored at zero (for turning a session's running total into a run's)."""
        cost = None
        if self.cost_usd is not None:
            cost = max(self.cost_usd - (other.cost_usd or 0.0), 0.0)
        return Usage(
            input_tokens=max(self.input_tokens - other.input_tokens, 0),
            output_tokens=max(self.output_tokens - other.output_tokens, 0),
            cached_input_tokens=max(self.cached_input_tokens - other.cached_input_tokens, 0),
            reasoning_tokens=max(self.reasoning_tokens - other.reasoning_tokens, 0),
            cost_usd=cost,
        )


def _add_cost(left: float | None, right: float | None) -> float | None:
    if left is None and right is None:
        return None
    return (left or 0.0) + (right or 0.0)


class UsageEvent(Usage):
    kind: Literal["usage"] = "usage"

    def usage(self) -> Usage:
        return Usage.model_validate(self.model_dump(exclude={"kind"}))


class SessionEvent(_Event):
    kind: Literal["session"] = "session"
    session_id: str


class ErrorEvent(_Event):
    kind: Literal["error"] = "error"
    message: str

    @field_validator("message")
    @classmethod
    def _bound(cls, value: str) -> str:
        return truncate(value, MESSAGE_LIMIT)


class SystemEvent(_Event):
    kind: Literal["system"] = "system"
    message: str

    @field_validator("message")
    @classmethod
    def _bound(cls, value: str) -> str:
        return truncate(value, MESSAGE_LIMIT)


TranscriptEvent = Annotated[
    TextEvent
    | ToolCallEvent
    | ToolResultEvent
    | UsageEvent
    | SessionEvent
    | ErrorEvent
    | SystemEvent,
    Field(discriminator="kind"),
]

_EVENT = TypeAdapter[TranscriptEvent](TranscriptEvent)
_EVENTS = TypeAdapter[list[TranscriptEvent]](list[TranscriptEvent])


def parse_event(data: str | bytes) -> TranscriptEvent:
    """One event from its JSON; raises pydantic's ValidationError when it is not one."""
    return _EVENT.validate_json(data)


def dump_events(events: list[TranscriptEvent]) -> bytes:
    """A list of events as one JSON array (the form `parse_events` reads)."""
    return _EVENTS.dump_json(events)


def parse_events(data: str | bytes) -> list[TranscriptEvent]:
    return _EVENTS.validate_json(data)
