"""The one error a receiver of a wire message has to handle."""

from __future__ import annotations

from pydantic import ValidationError


class WireError(ValueError):
    """A message body is not valid JSON or does not match its model.

    The message is one line naming the message kind, the field and the problem; the receiver
    dead-letters the message and keeps consuming.
    """

    @classmethod
    def first_of(cls, what: str, exc: ValidationError) -> WireError:
        """`<what>: <field path>: <problem>` for the first thing pydantic found wrong."""
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return cls(f"{what}: {where}: {first['msg']}")
