"""Messages the server sends to one machine's control queue (`tama.machine.<id>.control`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, ValidationError

from taskmachine.wire.errors import WireError
from taskmachine.wire.messages import WireMessage


class UpdateRequest(WireMessage):
    """Install this tama version (or the newest) and restart."""

    v: int = 1
    kind: Literal["update"] = "update"
    request_id: uuid.UUID
    target_version: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class CancelRun(WireMessage):
    """Stop a run now: SIGTERM to its process group, SIGKILL after the grace period."""

    v: int = 1
    kind: Literal["cancel"] = "cancel"
    run_id: uuid.UUID
    attempt: int = Field(ge=1)


ClaimOutcome = Literal["accepted", "refused", "unavailable"]


class ClaimAnswer(WireMessage):
    """The server's answer to a RunClaim: accepted (run it), refused (drop the delivery), or
    unavailable (no answer now: requeue the job and claim again later)."""

    v: int = 1
    kind: Literal["claim_answer"] = "claim_answer"
    claim_id: uuid.UUID
    run_id: uuid.UUID
    attempt: int = Field(ge=1)
    outcome: ClaimOutcome
    reason: Annotated[str, Field(max_length=200)] | None = None


ControlMessage = Annotated[UpdateRequest | CancelRun | ClaimAnswer, Field(discriminator="kind")]
_adapter: TypeAdapter[UpdateRequest | CancelRun | ClaimAnswer] = TypeAdapter(ControlMessage)


def parse_control(body: bytes) -> UpdateRequest | CancelRun | ClaimAnswer:
    try:
        return _adapter.validate_json(body, strict=True)
    except ValidationError as exc:
        raise WireError.first_of("control message", exc) from None
