"""Small input checks shared by domain operations."""

from __future__ import annotations

import re
import uuid

from taskmachine.domain.errors import BadInput

HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# No whitespace, control characters or unpaired surrogates (PostgreSQL refuses NUL outright).
EMAIL_RE = re.compile(
    r"^[^@\s\x00-\x1f\x7f\ud800-\udfff]{1,64}@[^@\s\x00-\x1f\x7f\ud800-\udfff]{1,189}"
    r"\.[^@\s\x00-\x1f\x7f\ud800-\udfff]{1,63}$"
)
# JSON can carry "\ud800" alone; no database can store it (UTF-8 cannot encode it).
SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def text(value: str, field: str, *, max_length: int, required: bool = True) -> str:
    cleaned = value.strip()
    if required and not cleaned:
        raise BadInput(f"{field} must not be empty", field=field)
    if len(cleaned) > max_length:
        raise BadInput(f"{field} is longer than {max_length} characters", field=field)
    _storable(cleaned, field)
    return cleaned


def _storable(value: str, field: str) -> None:
    if "\x00" in value:
        raise BadInput(f"{field} contains a NUL character", field=field)
    if SURROGATE_RE.search(value):
        raise BadInput(f"{field} contains an unpaired surrogate", field=field)


def needle(value: str, field: str, *, max_length: int = 100) -> str:
    """A search or filter term: trimmed, cut to max_length, and something a database can bind."""
    cleaned = value.strip()[:max_length]
    _storable(cleaned, field)
    return cleaned


def handle(value: str, field: str = "handle") -> str:
    cleaned = value.strip().lower()
    if not HANDLE_RE.match(cleaned):
        raise BadInput(f"{field} must be 1-64 lowercase letters, digits, '-' or '_'", field=field)
    return cleaned


def email(value: str, field: str = "email") -> str:
    cleaned = value.strip().lower()
    if len(cleaned) > 254 or not EMAIL_RE.match(cleaned):
        raise BadInput(f"{field} is not an email address", field=field)
    return cleaned


def parse_id(value: str | uuid.UUID, field: str = "id") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadInput(f"{field} is not a valid id", field=field) from None


def slugify(value: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return slug[:48] or "workspace"
