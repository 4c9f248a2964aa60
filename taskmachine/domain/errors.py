"""Expected errors, each with a stable code that the API reports as `extensions.code`.

DomainError
 ├── Unauthenticated   UNAUTHENTICATED  no or bad credentials
 ├── Forbidden         FORBIDDEN        signed in, but the role lacks the permission key
 ├── NotFound          NOT_FOUND        missing, or in a workspace the caller cannot see
 ├── BadInput          BAD_USER_INPUT   a value fails validation (names the field)
 └── Conflict          CONFLICT         the change clashes with the current state
"""

from __future__ import annotations


class DomainError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class BadInput(DomainError):
    code = "BAD_USER_INPUT"


class Conflict(DomainError):
    code = "CONFLICT"
