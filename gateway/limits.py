"""Limits measured on a document before it runs: depth, aliases and cost (docs/GATEWAY.md).

Every fragment is measured once per document (memoised by name), so the work is linear in
the document however often fragments spread each other. The cost of a field is 1 plus the
cost of its selections, times the number of items its list may hold:

- a `limit` argument gives that number (its schema default when not given; a paged
  list's null `limit`, its whole length, counts as below);
- `salesByHour` holds at most one row per hour of its window;
- other data lists count as one page of the materializer (`UNBOUNDED_LIST_SIZE` rows);
- introspection lists count as the largest such list in the schema (it is fixed).

A list size taken from a variable is only known per request: such operations are measured
again with the request's variables (`Measure.uses_variables`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    value_from_ast,
)
from graphql.pyutils import Undefined
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef

from gateway.errors import BadUserInput
from gateway.scalars import parse_datetime

#: The largest `limit` any list argument takes (the materializer's largest page).
MAX_LIMIT = 5000
#: Rows a list without a `limit` argument counts as (the materializer's default page).
UNBOUNDED_LIST_SIZE = 1000
#: Hours `salesByHour` counts when its window is not given (its default, the last 24 h).
DEFAULT_WINDOW_HOURS = 24

#: Longest text argument (ids, names, channels) sent to the materializer.
MAX_TEXT_ARGUMENT = 256

INTROSPECTION_ROOTS = frozenset(["__schema", "__type"])


def fragment_definitions(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    """The document's fragments by name."""
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def check_limit(value: int | None, default: int) -> int:
    """A list argument `limit`: its default when not given, else 1 to MAX_LIMIT."""
    if value is None:
        return default
    if not 1 <= value <= MAX_LIMIT:
        raise BadUserInput(f"limit must be between 1 and {MAX_LIMIT}, got {value}")
    return value


def check_offset(value: int) -> int:
    """A paged list's `offset`: rows to skip, 0 or more."""
    if value < 0:
        raise BadUserInput(f"offset must be 0 or more, got {value}")
    return value


def check_text_params(params: Mapping[str, Any]) -> None:
    """Refuse text parameters too long to be an id or a name before they go upstream."""
    for key, value in params.items():
        if isinstance(value, str) and len(value) > MAX_TEXT_ARGUMENT:
            raise BadUserInput(
                f"'{key}' is {len(value)} characters long, more than {MAX_TEXT_ARGUMENT}"
            )


def list_field_sizes(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    """The largest list each introspection field can return for this (fixed) schema."""
    named = list(schema.type_map.values())
    with_fields = [t for t in named if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    fields = [f for t in with_fields for f in t.fields.values()]
    enums = [t for t in named if isinstance(t, GraphQLEnumType)]
    inputs = [t for t in named if isinstance(t, GraphQLInputObjectType)]
    abstract = [t for t in named if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)]
    directives = list(schema.directives)

    def most(values: list[int]) -> int:
        return max([1, *values])

    args = most([len(f.args) for f in fields] + [len(d.args) for d in directives])
    return {
        ("__Schema", "types"): most([len(named)]),
        ("__Schema", "directives"): most([len(directives)]),
        ("__Type", "fields"): most([len(t.fields) for t in with_fields]),
        ("__Type", "interfaces"): most([len(getattr(t, "interfaces", ())) for t in with_fields]),
        ("__Type", "possibleTypes"): most([len(schema.get_possible_types(t)) for t in abstract]),
        ("__Type", "enumValues"): most([len(t.values) for t in enums]),
        ("__Type", "inputFields"): most([len(t.fields) for t in inputs]),
        ("__Field", "args"): args,
        ("__Directive", "args"): args,
        ("__Directive", "locations"): most([len(d.locations) for d in directives]),
    }


@dataclass(frozen=True, slots=True)
class Measure:
    """What one operation asks for."""

    #: Deepest path through data fields.
    depth: int
    #: Deepest path through introspection (`__schema`, `__type`) fields.
    introspection_depth: int
    cost: int
    #: Some list size came from a variable (measure again with the request's variables).
    uses_variables: bool


@dataclass(slots=True)
class _Total:
    depth: int = 0
    introspection_depth: int = 0
    cost: int = 0

    def add(self, other: _Total) -> None:
        self.depth = max(self.depth, other.depth)
        self.introspection_depth = max(self.introspection_depth, other.introspection_depth)
        self.cost += other.cost


class Measurer:
    """Measures operations of one document; fragments are measured once each."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        sizes: Mapping[tuple[str, str], int],
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        # None: variables unknown (largest sizes); FLOOR: smallest sizes; else their values.
        self.schema = schema
        self.sizes = sizes
        self.variables = variables
        self.uses_variables = False
        self.fragments = fragment_definitions(document)
        self._measured: dict[str, _Total] = {}
        self._visiting: set[str] = set()

    def operation(self, operation: OperationDefinitionNode) -> Measure:
        """Depth and cost of one operation."""
        root = self.schema.get_root_type(operation.operation)
        total = self._selections(operation.selection_set, root, False)
        return Measure(total.depth, total.introspection_depth, total.cost, self.uses_variables)

    def _selections(
        self, selection_set: SelectionSetNode | None, parent: Any, introspection: bool
    ) -> _Total:
        total = _Total()
        if selection_set is None:
            return total
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total.add(self._field(selection, parent, introspection))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total.add(self._selections(selection.selection_set, inner, introspection))
            elif isinstance(selection, FragmentSpreadNode):
                total.add(self._fragment(selection.name.value))
        return total

    def _fragment(self, name: str) -> _Total:
        measured = self._measured.get(name)
        if measured is not None:
            return measured
        fragment = self.fragments.get(name)
        if fragment is None or name in self._visiting:
            return _Total()  # unknown or cyclic: validation reports it
        self._visiting.add(name)
        parent = self.schema.get_type(fragment.type_condition.name.value)
        # Introspection types are reached only through introspection: the type tells.
        inside = parent is not None and parent.name.startswith("__")
        measured = self._selections(fragment.selection_set, parent, inside)
        self._visiting.discard(name)
        self._measured[name] = measured
        return measured

    def _field(self, node: FieldNode, parent: Any, introspection: bool) -> _Total:
        name = node.name.value
        definition = _field_definition(self.schema, parent, name)
        entering = name in INTROSPECTION_ROOTS
        inside = introspection or entering
        child_type = _named_type(definition.type) if definition is not None else None
        children = self._selections(node.selection_set, child_type, inside)
        size = self._list_size(node, parent, definition)
        total = _Total(cost=size * (1 + children.cost))
        if inside:
            total.introspection_depth = 1 + max(children.depth, children.introspection_depth)
        else:
            total.depth = 1 + children.depth
            if children.introspection_depth:
                total.introspection_depth = 1 + children.introspection_depth
        return total

    def _list_size(self, node: FieldNode, parent: Any, definition: GraphQLField | None) -> int:
        if definition is None or not _is_list(definition.type):
            return 1
        parent_name = parent.name if parent is not None else ""
        name = node.name.value
        fixed = self.sizes.get((parent_name, name))
        if fixed is not None:
            return fixed
        if "limit" in definition.args:
            value = self._argument(node, definition, "limit")
            if value is _UNKNOWN:
                return MAX_LIMIT
            if value is not None:  # null: a paged list's whole length, counted below
                if not isinstance(value, int) or isinstance(value, bool):
                    return 1  # the smallest a variable may give, or a value the request refuses
                return max(1, min(value, MAX_LIMIT))
        if name == "salesByHour":
            return self._window_hours(node, definition)
        return UNBOUNDED_LIST_SIZE

    def _window_hours(self, node: FieldNode, definition: GraphQLField) -> int:
        start = self._argument(node, definition, "from")
        end = self._argument(node, definition, "to")
        if _UNKNOWN in (start, end):
            return UNBOUNDED_LIST_SIZE
        if _SMALLEST in (start, end):
            return 1
        if start is None and end is None:
            return DEFAULT_WINDOW_HOURS
        try:
            start_at = parse_datetime(start) if start is not None else None
            end_at = parse_datetime(end) if end is not None else None
        except GraphQLError:
            return 1  # the request fails on the bad value anyway
        if start_at is None or end_at is None:
            return DEFAULT_WINDOW_HOURS if start_at is None else UNBOUNDED_LIST_SIZE
        hours = (end_at - start_at) // dt.timedelta(hours=1) + 1
        return max(1, min(hours, UNBOUNDED_LIST_SIZE))

    def _argument(self, node: FieldNode, definition: GraphQLField, name: str) -> Any:
        """An argument's value: literal, variable (when known) or the schema default."""
        default = definition.args[name].default_value
        default = None if default is Undefined else default
        for argument in node.arguments or ():
            if argument.name.value != name:
                continue
            if not isinstance(argument.value, VariableNode):
                return self._literal(argument.value, definition.args[name].type)
            self.uses_variables = True
            if self.variables is None:
                return _UNKNOWN
            if self.variables is FLOOR:
                return _SMALLEST
            value = self.variables.get(argument.value.name.value)
            # An absent or null variable leaves the argument to its default (see resolvers).
            return default if value is None else value
        return default

    def _literal(self, value: ValueNode, type_: Any) -> Any:
        try:
            return value_from_ast(value, _nullable(type_))
        except (GraphQLError, TypeError, ValueError):
            return None


class _Marker:
    """A stand-in for variable values that are not known yet."""


#: A variable's value at preparation time: the largest it may be.
_UNKNOWN: Any = _Marker()
#: A variable's value when measuring the least an operation can cost.
_SMALLEST: Any = _Marker()
#: Pass as `variables` to measure with the smallest sizes variables could give.
FLOOR: Mapping[str, Any] = MappingProxyType({})


def _field_definition(schema: GraphQLSchema, parent: Any, name: str) -> GraphQLField | None:
    if name == "__schema" and parent is schema.query_type:
        return SchemaMetaFieldDef
    if name == "__type" and parent is schema.query_type:
        return TypeMetaFieldDef
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        return parent.fields.get(name)
    return None


def _nullable(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _is_list(type_: Any) -> bool:
    return isinstance(_nullable(type_), GraphQLList)


def _named_type(type_: Any) -> GraphQLNamedType | None:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_  # type: ignore[no-any-return]
