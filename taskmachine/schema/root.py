"""The root Query, Mutation and Subscription, composed from the domains."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from taskmachine.domain.errors import DomainError
from taskmachine.schema.errors import ErrorCodes
from taskmachine.schema.extensions import OperationScopeExtension
from taskmachine.schema.limits import CostLimit
from taskmachine.schema.ops import agent_actions, agents, fleet, people, runs, talk, work
from taskmachine.schema.subscriptions import FleetSubscription, TaskSubscription
from taskmachine.settings import Settings

DOMAINS = (people, agents, work, talk, runs, fleet, agent_actions)

Query = merge_types("Query", tuple(d.Query for d in DOMAINS))
Mutation = merge_types("Mutation", tuple(d.Mutation for d in DOMAINS if hasattr(d, "Mutation")))
Subscription = merge_types("Subscription", (TaskSubscription, FleetSubscription))


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Expected errors (bad input, missing rights…) are answers, not incidents: log the rest.
        unexpected = [
            e
            for e in errors
            if e.original_error is not None
            and not isinstance(e.original_error, (DomainError, GraphQLError))
        ]
        if unexpected:
            super().process_errors(unexpected, execution_context)


def build_schema(settings: Settings) -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True),
        # Factories: each operation gets fresh extension instances (they hold per-run state).
        extensions=[
            ErrorCodes,
            lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
            lambda: MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
            lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
            lambda: CostLimit(max_cost=50_000, max_page=settings.max_page_size),
            OperationScopeExtension,
        ],
    )
