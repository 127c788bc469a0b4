"""Parsing, validation with limits, and execution of GraphQL documents (shared by HTTP and WS).

Documents are parsed and validated once per distinct text (an LRU), then executed with
graphql-core directly on the strawberry schema, which skips per-request machinery that a
dashboard sending the same document every few seconds does not need.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
    specified_rules,
    validate,
)
from graphql.execution import execute
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.validation import NoSchemaIntrospectionCustomRule

from gateway.errors import format_graphql_error
from gateway.schema import Context, schema
from gateway.settings import Settings
from gateway.versions import FIELD_QUERIES, QUERY_DEPENDENCIES

#: Encodes results: Decimal money as JSON numbers, exactly as stored.
encoder = msgspec.json.Encoder(decimal_format="number")

_DOCUMENT_CACHE_SIZE = 512


@dataclass
class Operation:
    """One operation of a prepared document and what it reads."""

    node: OperationDefinitionNode
    kind: OperationType
    root_fields: list[FieldNode]
    #: Tracked aggregates the operation's root fields read (for cache keys).
    dependencies: tuple[str, ...]
    #: For subscriptions: the same selection as a query document, executed per change.
    as_query: DocumentNode | None = None


@dataclass
class Prepared:
    """A parsed and validated document, or the request errors that stop it."""

    document: DocumentNode | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str | None, Operation] = field(default_factory=dict)

    def operation(self, name: str | None) -> Operation | dict[str, Any]:
        """The operation to run, or a request error when it cannot be chosen."""
        if name is None:
            if len(self.operations) == 1:
                return next(iter(self.operations.values()))
            return _error("Must provide operation name if query contains multiple operations.")
        found = self.operations.get(name)
        if found is None:
            return _error(f"Unknown operation named '{name}'.")
        return found


def _error(message: str, code: str = "GRAPHQL_VALIDATION_FAILED") -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


class Executor:
    """Prepares and executes documents against the gateway schema under the settings' limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = schema._schema
        self._execution_context_class = schema.execution_context_class
        rules = list(specified_rules)
        if not settings.introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self._rules = rules
        self._documents: OrderedDict[str, Prepared] = OrderedDict()

    def prepare(self, text: str) -> Prepared:
        """Parse and validate once per distinct document text."""
        prepared = self._documents.get(text)
        if prepared is not None:
            self._documents.move_to_end(text)
            return prepared
        prepared = self._prepare(text)
        self._documents[text] = prepared
        if len(self._documents) > _DOCUMENT_CACHE_SIZE:
            self._documents.popitem(last=False)
        return prepared

    def _prepare(self, text: str) -> Prepared:
        limit = self.settings.max_document_bytes
        if len(text) > limit or len(text.encode()) > limit:
            return Prepared(
                None, [_error(f"Document is larger than {limit} bytes.", "DOCUMENT_TOO_LARGE")]
            )
        try:
            document = parse(text, max_tokens=self.settings.max_tokens)
        except GraphQLError as exc:
            return Prepared(
                None, [{**exc.formatted, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]
            )
        errors = check_limits(document, self.settings)
        if not errors:
            errors = validate(self.schema, document, self._rules)
        if errors:
            return Prepared(
                None,
                [
                    {**e.formatted, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}
                    for e in errors
                ],
            )
        fragments = _fragments(document)
        operations: dict[str | None, Operation] = {}
        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            roots = list(_root_fields(definition.selection_set, fragments))
            deps = sorted(
                {
                    d
                    for f in roots
                    for d in QUERY_DEPENDENCIES.get(FIELD_QUERIES.get(f.name.value, ""), ())
                }
            )
            operation = Operation(definition, definition.operation, roots, tuple(deps))
            if definition.operation is OperationType.SUBSCRIPTION:
                operation.as_query = _as_query(document, definition)
            operations[definition.name.value if definition.name else None] = operation
        return Prepared(document, [], operations)

    def coerce(self, operation: Operation, variables: Mapping[str, Any] | None) -> Any:
        """Coerced variables, or a list of formatted request errors."""
        coerced = get_variable_values(
            self.schema, operation.node.variable_definitions or (), dict(variables or {})
        )
        if isinstance(coerced, list):
            return [{**e.formatted, "extensions": {"code": "BAD_USER_INPUT"}} for e in coerced]
        return coerced

    def root_arguments(self, operation: Operation, coerced_variables: Any) -> dict[str, Any]:
        """Coerced arguments of a subscription's single root field."""
        node = operation.root_fields[0]
        field_def = self.schema.subscription_type.fields[node.name.value]  # type: ignore[union-attr]
        return get_argument_values(field_def, node, coerced_variables)

    async def execute(
        self,
        document: DocumentNode,
        context: Context,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> ExecutionResult:
        """Run one operation (queries only: subscriptions run as queries via `as_query`)."""
        result = execute(
            self.schema,
            document,
            context_value=context,
            variable_values=dict(variables or {}),
            operation_name=operation_name,
            executor_class=self._execution_context_class,
        )
        if isinstance(result, ExecutionResult):
            return result
        return await result  # type: ignore[no-any-return]


def result_payload(result: ExecutionResult) -> dict[str, Any]:
    """The JSON object of an execution result (`data`, and `errors` when any)."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [format_graphql_error(e) for e in result.errors]
    return payload


def check_limits(document: DocumentNode, settings: Settings) -> list[GraphQLError]:
    """Depth and alias limits, checked before validation so hostile documents stop early."""
    errors: list[GraphQLError] = []
    fragments = _fragments(document)
    aliases = sum(1 for _ in _aliases(document))
    if aliases > settings.max_aliases:
        errors.append(
            GraphQLError(f"Document uses {aliases} aliases, more than {settings.max_aliases}.")
        )
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            depth = _depth(definition.selection_set, fragments, set())
            if depth > settings.max_depth:
                name = definition.name.value if definition.name else "anonymous"
                errors.append(
                    GraphQLError(
                        f"Operation '{name}' is {depth} levels deep, "
                        f"more than {settings.max_depth}.",
                        definition,
                    )
                )
    return errors


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _aliases(document: DocumentNode) -> Iterable[FieldNode]:
    stack: list[Any] = list(document.definitions)
    while stack:
        node = stack.pop()
        if isinstance(node, FieldNode) and node.alias is not None:
            yield node
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    visiting: set[str],
) -> int:
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            deepest = max(deepest, 1 + _depth(selection.selection_set, fragments, visiting))
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, visiting))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in visiting:
                continue  # unknown or cyclic: validation reports it
            visiting.add(name)
            deepest = max(deepest, _depth(fragment.selection_set, fragments, visiting))
            visiting.discard(name)
    return deepest


def _root_fields(
    selection_set: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> Iterable[FieldNode]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                yield from _root_fields(fragment.selection_set, fragments)


def _as_query(document: DocumentNode, operation: OperationDefinitionNode) -> DocumentNode:
    """The document with this subscription turned into a query of the same fields.

    Every Subscription field has a Query twin with the same name, arguments and type,
    so a live query is "run the query again when its data changed".
    """
    query = OperationDefinitionNode(
        operation=OperationType.QUERY,
        name=operation.name,
        variable_definitions=operation.variable_definitions,
        directives=operation.directives,
        selection_set=operation.selection_set,
    )
    definitions = tuple(
        query if d is operation else d
        for d in document.definitions
        if d is operation or not isinstance(d, OperationDefinitionNode)
    )
    return DocumentNode(definitions=definitions)
