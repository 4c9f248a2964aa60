"""Run jobs (server → one machine's jobs queue) and run events (daemon → tama.events).

A job carries finished instructions: the daemon never builds prompts. It names the run's folder
by ids only; where that folder lives on disk is the daemon's business, and local paths never
travel back. Run events are numbered per attempt (`seq` from 0) so the server applies each
exactly once, whatever the broker or the daemon's spool re-delivers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from taskmachine.wire.errors import WireError
from taskmachine.wire.messages import WireMessage

Permission = Literal["safe", "full_auto"]
RuntimeName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$")]


class SkillFile(WireMessage):
    """A file written into the run folder where the CLI reads skills (e.g. a SKILL.md)."""

    path: Annotated[str, Field(min_length=1, max_length=200)]
    content: Annotated[str, Field(max_length=200_000)]

    @field_validator("path")
    @classmethod
    def _relative_and_inside(cls, value: str) -> str:
        parts = value.split("/")
        if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError("must be a relative path inside the run folder")
        return value


class RunLimits(WireMessage):
    hard_timeout_seconds: float = Field(gt=0)
    idle_timeout_seconds: float = Field(gt=0)
    cancel_grace_seconds: float = Field(gt=0)


class RunJob(WireMessage):
    v: Annotated[int, Field(ge=1)] = 1
    run_id: uuid.UUID
    attempt: Annotated[int, Field(ge=1)]
    workspace_id: uuid.UUID
    # The thing the run is about: its folder is <execution_root>/<workspace_id>/<subject_id>.
    subject_id: uuid.UUID
    subject_kind: Literal["task", "chat"]
    runtime: RuntimeName
    model: Annotated[str, Field(max_length=120)] | None = None
    reasoning_level: Annotated[str, Field(max_length=32)] | None = None
    prompt: Annotated[str, Field(min_length=1, max_length=2_000_000)]
    resume_session_id: Annotated[str, Field(max_length=128)] | None = None
    permission: Permission = "safe"
    # The `tama` CLI inside the run acts with this token against this API.
    run_token: Annotated[str, Field(min_length=1, max_length=200)]
    api_url: Annotated[str, Field(min_length=1, max_length=500)]
    skills: Annotated[list[SkillFile], Field(max_length=64, default_factory=list)]
    limits: RunLimits
    # After a lost lease the retry starts from a clean worktree.
    clean_worktree: bool = False
    dispatched_at: datetime


class RunStarted(WireMessage):
    v: Annotated[int, Field(ge=1)] = 1
    kind: Literal["started"] = "started"
    run_id: uuid.UUID
    attempt: Annotated[int, Field(ge=1)]
    seq: Annotated[int, Field(ge=0)]
    sent_at: datetime


class RunOutput(WireMessage):
    """A batch of normalized transcript events (see taskmachine.wire.transcript)."""

    v: Annotated[int, Field(ge=1)] = 1
    kind: Literal["output"] = "output"
    run_id: uuid.UUID
    attempt: Annotated[int, Field(ge=1)]
    seq: Annotated[int, Field(ge=0)]
    sent_at: datetime
    events: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=10_000)]


class RunFinished(WireMessage):
    v: Annotated[int, Field(ge=1)] = 1
    kind: Literal["finished"] = "finished"
    run_id: uuid.UUID
    attempt: Annotated[int, Field(ge=1)]
    seq: Annotated[int, Field(ge=0)]
    sent_at: datetime
    outcome: Literal["succeeded", "failed", "cancelled", "timeout"]
    exit_code: int | None = None
    # cli_error | auth | quota | config (taskmachine.wire.transcript.FailureCode), or a daemon
    # code: spawn_failed, workspace_error.
    failure_code: Annotated[str, Field(max_length=32)] | None = None
    # The last 2 KB of error output.
    error: Annotated[str, Field(max_length=4096)] | None = None
    session_id: Annotated[str, Field(max_length=128)] | None = None
    usage: dict[str, Any] = Field(default_factory=dict)
    cost_usd: float | None = None
    diff_stat: Annotated[str, Field(max_length=20_000)] | None = None


class RunClaim(WireMessage):
    """A machine asks to take a delivered job (routing key machine.<id>.claim.<run>); the
    server answers on the machine's control queue with a ClaimAnswer of the same claim_id."""

    v: Annotated[int, Field(ge=1)] = 1
    kind: Literal["claim"] = "claim"
    run_id: uuid.UUID
    attempt: Annotated[int, Field(ge=1)]
    claim_id: uuid.UUID


RunEvent = Annotated[RunStarted | RunOutput | RunFinished, Field(discriminator="kind")]
_event_adapter: TypeAdapter[RunStarted | RunOutput | RunFinished] = TypeAdapter(RunEvent)


def parse_run_event(body: bytes) -> RunStarted | RunOutput | RunFinished:
    try:
        return _event_adapter.validate_json(body, strict=True)
    except ValidationError as exc:
        raise WireError.first_of("run event", exc) from None
