"""Every error leaves with a stable `extensions.code`; unexpected ones are logged and masked.

| code                       | when                                                     |
|----------------------------|----------------------------------------------------------|
| UNAUTHENTICATED            | no or bad credentials                                    |
| FORBIDDEN                  | the role lacks the permission key                        |
| NOT_FOUND                  | missing, or in a workspace the caller cannot see         |
| BAD_USER_INPUT             | a value fails validation (`extensions.field` names it)   |
| CONFLICT                   | the change clashes with the current state                |
| GRAPHQL_VALIDATION_FAILED  | the document is malformed, too deep, too costly, …       |
| INTERNAL                   | anything unexpected (details only in the server log)     |
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from taskmachine.domain.errors import DomainError

log = logging.getLogger("taskmachine.graphql")


def _with_code(
    error: GraphQLError, code: str, message: str | None = None, **extra: Any
) -> GraphQLError:
    return GraphQLError(
        message if message is not None else error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), "code": code, **extra},
    )


def classify(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, DomainError):
        extra = {"field": original.field} if original.field else {}
        return _with_code(error, original.code, original.message, **extra)
    if error.extensions and "code" in error.extensions:
        return error
    if original is None:
        # A variable's value that fails coercion is bad input; a variable the document
        # misuses ("is never used", "is not defined", wrong position) is a malformed document.
        if error.message.startswith("Variable '$") and " has invalid value" in error.message:
            return _with_code(error, "BAD_USER_INPUT")
        return _with_code(error, "GRAPHQL_VALIDATION_FAILED")
    if isinstance(original, GraphQLError):  # e.g. a scalar that could not parse its input
        return _with_code(error, "BAD_USER_INPUT")
    log.error("unexpected error at %s", error.path, exc_info=original)
    return _with_code(error, "INTERNAL", "Internal server error")


class ErrorCodes(MaskErrors):
    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [classify(error) for error in errors]
