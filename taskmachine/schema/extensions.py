"""Schema extensions: the operation's transaction, and query limits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from taskmachine.schema.scope import OperationScope


class OperationScopeExtension(SchemaExtension):
    """One session per query or mutation; a mutation commits only if its root fields succeeded.

    One request is one transaction: if any root mutation field fails, nothing of the request
    is kept. Subscriptions open a fresh scope per event instead (taskmachine.schema.scope).
    """

    async def on_execute(self) -> AsyncIterator[None]:
        context: Any = self.execution_context.context
        if self.execution_context.operation_type is OperationType.SUBSCRIPTION:
            yield
            return
        scope = OperationScope(context.state)
        token = scope.activate()
        committed = False
        try:
            yield
            result = self.execution_context.result
            errors: list[GraphQLError] = list(getattr(result, "errors", None) or [])
            root_failed = any(not e.path or len(e.path) == 1 for e in errors)
            is_mutation = self.execution_context.operation_type is OperationType.MUTATION
            committed = is_mutation and not root_failed
            await scope.finish(commit=committed)
        finally:
            if not committed:
                await scope.finish(commit=False)
            with contextlib.suppress(ValueError):
                OperationScope.deactivate(token)
