"""Schema extensions: the operation's transaction, and query limits."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError
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
            await scope.finish(commit=committed, keep_stamp=not is_mutation)
        finally:
            if not committed:
                await scope.finish(commit=False)
            with contextlib.suppress(ValueError):
                OperationScope.deactivate(token)


class ParsedDocuments(SchemaExtension):
    """Reuses the parsed document of a query text seen before (clients send the same few
    documents again and again; parsing was a fifth of a board query's CPU).

    Only documents that parsed are kept, so a syntax error still goes through Strawberry's own
    parsing and comes back as a GraphQL error; parse options (the token limit) are the same for
    every operation of a schema, so the text alone is the key. Bounded, least recently used out.
    """

    def __init__(self, cache: OrderedDict[str, DocumentNode], maxsize: int) -> None:
        self.cache = cache
        self.maxsize = maxsize

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        document = self.cache.get(query) if query else None
        if document is not None:
            self.cache.move_to_end(query)  # type: ignore[arg-type]
            context.graphql_document = document
        yield
        if document is None and query and context.graphql_document is not None:
            self.cache[query] = context.graphql_document
            if len(self.cache) > self.maxsize:
                self.cache.popitem(last=False)
