"""The one error a receiver of a wire message has to handle."""

from __future__ import annotations


class WireError(ValueError):
    """A message body is not valid JSON or does not match its model.

    The message is one line naming the message kind, the field and the problem; the receiver
    dead-letters the message and keeps consuming.
    """
