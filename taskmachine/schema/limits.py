"""A query-cost limit: page sizes multiply the fields selected beneath them.

Depth, alias and token limits come from Strawberry's extensions; this rule stops a shallow query
that still asks for too much (many wide pages). A `first` given by a variable counts at the
largest page size, since validation runs before variables are known.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from strawberry.extensions import AddValidationRules

NESTED_LIST_GUESS = 10


def make_rule(max_cost: int, max_page: int) -> type[ValidationRule]:
    class CostRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments: dict[str, FragmentDefinitionNode] = {
                d.name.value: d
                for d in context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }

        def _page(self, node: FieldNode) -> int | None:
            for arg in node.arguments or ():
                if arg.name.value == "first":
                    if isinstance(arg.value, IntValueNode):
                        return max(int(arg.value.value), 1)
                    return max_page
            return None

        def _cost(self, selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
            if selection_set is None:
                return 0
            total = 0
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    inner = self._cost(selection.selection_set, seen)
                    page = self._page(selection)
                    if page is not None:
                        total += 1 + page * max(inner, 1)
                    elif selection.selection_set is not None and selection.name.value != "pageInfo":
                        total += 1 + inner
                    else:
                        total += 1
                elif isinstance(selection, InlineFragmentNode):
                    total += self._cost(selection.selection_set, seen)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in seen or name not in self.fragments:
                        continue
                    total += self._cost(self.fragments[name].selection_set, seen | {name})
            return total

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost = self._cost(node.selection_set, frozenset())
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"the query costs {cost}, more than the limit of {max_cost}; "
                        "ask for smaller pages or fewer fields",
                        node,
                        extensions={"code": "GRAPHQL_VALIDATION_FAILED", "cost": cost},
                    )
                )

    return CostRule


class CostLimit(AddValidationRules):
    def __init__(self, max_cost: int, max_page: int = 200) -> None:
        super().__init__([make_rule(max_cost, max_page)])
