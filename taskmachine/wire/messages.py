"""Pydantic models of the AMQP messages between server and daemon: the contract of both sides.

Every message carries `v` (its schema version). Receivers ignore fields they do not know, so a
newer sender can add fields without breaking an older receiver; anything else that is wrong
raises `WireError` from `parse`, and the receiver dead-letters the message.

Types are strict (no "1" for 1, no naive datetimes) and sizes are bounded, so a bad sender cannot
make the server store junk. This module imports only the standard library and pydantic.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from taskmachine.wire.errors import WireError

# Sizes match the server's columns, so an accepted message always fits.
ShortText = Annotated[str, Field(min_length=1, max_length=64)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$")]
PathText = Annotated[str, Field(min_length=1, max_length=1024)]


class WireMessage(BaseModel):
    """Base of every message: strict, immutable, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        """Decode a message body; raises WireError with one line saying what is wrong."""
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            message = str(first["msg"]).removeprefix("Value error, ")
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise WireError(f"{cls.__name__}: {where}: {message}{more}") from None

    def to_body(self) -> bytes:
        """The message as a UTF-8 JSON body, the form `parse` reads."""
        return self.model_dump_json().encode()


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone (UTC)")
    return value.astimezone(UTC)


class ModelReport(WireMessage):
    """One model a runtime offers, with the reasoning levels it accepts."""

    id: Annotated[str, Field(min_length=1, max_length=128)]
    display_name: Annotated[str, Field(max_length=128)]
    reasoning_levels: Annotated[list[ShortText], Field(max_length=32)] = []
    default_reasoning_level: ShortText | None = None


class RuntimeReport(WireMessage):
    """A coding tool as the daemon found it: available with its models, or missing and why."""

    # Free names (not a closed set) so a newer daemon may report a tool this server predates.
    name: Name
    provider: Name
    path: PathText | None = None
    version: ShortText | None = None
    models: Annotated[list[ModelReport], Field(max_length=256)] = []
    available: bool
    reason: Annotated[str, Field(max_length=512)] | None = None


class ActiveRun(WireMessage):
    run_id: uuid.UUID
    attempt: Annotated[int, Field(ge=1)]


class Heartbeat(WireMessage):
    """Published by the daemon every heartbeat interval on `machine.<id>.heartbeat`."""

    v: Annotated[int, Field(ge=1)] = 1
    machine_id: uuid.UUID
    sent_at: datetime
    # Increases with each heartbeat of one daemon process; restarts from 0 when the daemon does.
    seq: Annotated[int, Field(ge=0)]
    cli_version: Annotated[str, Field(min_length=1, max_length=32)]
    execution_root: PathText
    capacity: Annotated[int, Field(ge=0, le=1024)]
    active_runs: Annotated[list[ActiveRun], Field(max_length=1024)] = []
    # The full list, or null for "unchanged": the same list as the last one sent with this
    # `runtimes_digest`. Daemons send the list only when it changes (and now and then), so the
    # server does not re-read 2 KB of identical models every beat. A daemon that sends no digest
    # sends the list every time.
    runtimes: Annotated[list[RuntimeReport], Field(max_length=32)] | None = []
    runtimes_digest: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    update_status: ShortText | None = None

    @field_validator("sent_at")
    @classmethod
    def _check_sent_at(cls, value: datetime) -> datetime:
        return _as_utc(value)

    @model_validator(mode="after")
    def _check_runtimes(self) -> Self:
        if self.runtimes is None and self.runtimes_digest is None:
            raise ValueError("runtimes: null needs the runtimes_digest it stands for")
        return self


_RUNTIME_LIST = TypeAdapter(list[RuntimeReport])


def runtimes_digest(runtimes: list[RuntimeReport]) -> str:
    """What a heartbeat carries instead of an unchanged runtime list: a hash of the list as the
    sender serialises it (the receiver never recomputes it, so a newer sender may add fields)."""
    return hashlib.sha256(_RUNTIME_LIST.dump_json(runtimes)).hexdigest()[:32]
