"""The root Query, Mutation and Subscription, composed from the domains."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from taskmachine.domain.errors import DomainError
from taskmachine.schema.errors import ErrorCodes
from taskmachine.schema.extensions import OperationScopeExtension, ParsedDocuments
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
    # The limits' rule classes are made once: the validation cache is keyed on them, and a
    # fresh class per request would never hit it.
    limit_rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
        *CostLimit(max_cost=50_000, max_page=settings.max_page_size).validation_rules,
    ]
    parsed: OrderedDict[str, DocumentNode] = OrderedDict()
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True),
        # Factories: each operation gets fresh extension instances (they hold per-run state).
        extensions=[
            ErrorCodes,
            # Parsing and validating the same documents again cost a quarter of a request.
            lambda: ParsedDocuments(parsed, maxsize=512),
            lambda: AddValidationRules(limit_rules),
            lambda: ValidationCache(maxsize=512),
            lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
            OperationScopeExtension,
        ],
    )
