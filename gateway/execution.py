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
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    specified_rules,
    validate,
)
from graphql.execution import execute
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.validation import NoSchemaIntrospectionCustomRule

from gateway.errors import format_graphql_error
from gateway.limits import FLOOR, Measure, Measurer, fragment_definitions, list_field_sizes
from gateway.persisted import PersistedQueries, not_in_list, root_fields
from gateway.schema import Context, schema
from gateway.settings import Settings
from gateway.versions import TRACKED
from pulse_bi.contract import BY_FIELD

#: Encodes results: Decimal money as JSON numbers, exactly as stored.
encoder = msgspec.json.Encoder(decimal_format="number")

_DOCUMENT_CACHE_SIZE = 512

#: `extensions.code` of an operation refused for its cost.
COST_LIMIT_EXCEEDED = "COST_LIMIT_EXCEEDED"


@dataclass
class Operation:
    """One operation of a prepared document and what it reads."""

    node: OperationDefinitionNode
    kind: OperationType
    root_fields: list[FieldNode]
    #: Tracked aggregates the operation's root fields read (for cache keys).
    dependencies: tuple[str, ...]
    #: Depth and cost; the cost is an upper bound when list sizes come from variables.
    measure: Measure
    #: The whole document (its fragments), to measure again with a request's variables.
    document: DocumentNode
    #: For subscriptions: the same selection as a query document, executed per change.
    as_query: DocumentNode | None = None


@dataclass
class Prepared:
    """A parsed and validated document, or the request errors that stop it."""

    document: DocumentNode | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str | None, Operation] = field(default_factory=dict)
    #: Kind of each operation as parsed, known even when validation failed (GET → 405).
    kinds: dict[str | None, OperationType] = field(default_factory=dict)

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

    def kind(self, name: str | None) -> OperationType | None:
        """The kind of the operation a request names, if the document parsed."""
        if name is None:
            return next(iter(self.kinds.values())) if len(self.kinds) == 1 else None
        return self.kinds.get(name)


def field_reads(field: str) -> tuple[str, ...]:
    """The topics a root field reads: none for introspection (the schema is fixed), every
    topic for a field the registry does not know, so its cached responses go stale with
    any change (fails closed)."""
    if field.startswith("__"):
        return ()
    spec = BY_FIELD.get(field)
    return TRACKED if spec is None else spec.reads


def _error(message: str, code: str = "GRAPHQL_VALIDATION_FAILED") -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


def _formatted(error: GraphQLError, code: str) -> dict[str, Any]:
    extensions = {"code": code, **(error.extensions or {})}
    return {**error.formatted, "extensions": extensions}


class Executor:
    """Prepares and executes documents against the gateway schema under the settings' limits."""

    def __init__(self, settings: Settings, persisted: PersistedQueries | None = None) -> None:
        self.settings = settings
        #: Trusted mode refuses documents outside the manifests, over HTTP, SSE and WS alike.
        self.persisted = persisted
        self.schema = schema._schema
        self._execution_context_class = schema.execution_context_class
        rules = list(specified_rules)
        if not settings.introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self._rules = rules
        # With introspection off, "Did you mean …?" would reveal the names it hides.
        self._hide_suggestions = not settings.introspection
        self._sizes = list_field_sizes(self.schema)
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
        kinds = {
            (d.name.value if d.name else None): d.operation
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        }
        if self.persisted is not None and not self.persisted.allows(text, document):
            return Prepared(None, [not_in_list()], kinds=kinds)
        errors, measures = check_limits(document, self.settings, self._sizes)
        if not errors:
            errors = self._variable_cost_floor(document, measures)
        if not errors:
            errors = validate(
                self.schema, document, self._rules, hide_suggestions=self._hide_suggestions
            )
        if errors:
            return Prepared(
                None,
                [_formatted(e, "GRAPHQL_VALIDATION_FAILED") for e in errors],
                kinds=kinds,
            )
        fragments = fragment_definitions(document)
        operations: dict[str | None, Operation] = {}
        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            roots = [
                root
                for root in root_fields(definition.selection_set, fragments)
                if isinstance(root, FieldNode)
            ]
            deps = sorted({d for f in roots for d in field_reads(f.name.value)})
            operation = Operation(
                definition,
                definition.operation,
                roots,
                tuple(deps),
                measures[id(definition)],
                document,
            )
            if definition.operation is OperationType.SUBSCRIPTION:
                operation.as_query = _as_query(document, definition)
            operations[definition.name.value if definition.name else None] = operation
        return Prepared(document, [], operations, kinds)

    def _variable_cost_floor(
        self, document: DocumentNode, measures: Mapping[int, Measure]
    ) -> list[GraphQLError]:
        """Refuse now what costs too much even with the smallest sizes variables can give."""
        errors: list[GraphQLError] = []
        measurer = Measurer(self.schema, document, self._sizes, FLOOR)
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                if not measures[id(definition)].uses_variables:
                    continue
                cost = measurer.operation(definition).cost
                if cost > self.settings.max_cost:
                    name = definition.name.value if definition.name else "anonymous"
                    errors.append(cost_error(name, cost, self.settings.max_cost, definition))
        return errors

    def coerce(self, operation: Operation, variables: Mapping[str, Any] | None) -> Any:
        """Coerced variables, or a list of formatted request errors (bad values, cost)."""
        coerced = get_variable_values(
            self.schema,
            operation.node.variable_definitions or (),
            dict(variables or {}),
            hide_suggestions=self._hide_suggestions,
        )
        if isinstance(coerced, list):
            return [_formatted(e, "BAD_USER_INPUT") for e in coerced]
        if operation.measure.uses_variables and operation.measure.cost > self.settings.max_cost:
            cost = self.cost(operation, coerced)
            if cost > self.settings.max_cost:
                name = operation.node.name.value if operation.node.name else "anonymous"
                error = cost_error(name, cost, self.settings.max_cost, operation.node)
                return [_formatted(error, COST_LIMIT_EXCEEDED)]
        return coerced

    def cost(self, operation: Operation, coerced_variables: Any) -> int:
        """The operation's cost with these (coerced) variables."""
        if not operation.measure.uses_variables:
            return operation.measure.cost
        # graphql-core 3.3 wraps the values with their sources.
        values = getattr(coerced_variables, "coerced", coerced_variables)
        measurer = Measurer(self.schema, operation.document, self._sizes, values)
        return measurer.operation(operation.node).cost

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


def check_limits(
    document: DocumentNode, settings: Settings, sizes: Mapping[tuple[str, str], int]
) -> tuple[list[GraphQLError], dict[int, Measure]]:
    """Alias, depth and cost limits, checked before validation so hostile documents stop early.

    Returns the errors and each operation's measure (by the id of its node).
    """
    errors: list[GraphQLError] = []
    aliases = sum(1 for _ in _aliases(document))
    if aliases > settings.max_aliases:
        errors.append(
            GraphQLError(f"Document uses {aliases} aliases, more than {settings.max_aliases}.")
        )
    measurer = Measurer(schema._schema, document, sizes)
    measures: dict[int, Measure] = {}
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        measure = measurer.operation(definition)
        measures[id(definition)] = measure
        name = definition.name.value if definition.name else "anonymous"
        if measure.depth > settings.max_depth:
            errors.append(
                GraphQLError(
                    f"Operation '{name}' is {measure.depth} levels deep, "
                    f"more than {settings.max_depth}.",
                    definition,
                )
            )
        if measure.introspection_depth > settings.max_introspection_depth:
            errors.append(
                GraphQLError(
                    f"Operation '{name}' introspects {measure.introspection_depth} levels deep, "
                    f"more than {settings.max_introspection_depth}.",
                    definition,
                )
            )
        if not measure.uses_variables and measure.cost > settings.max_cost:
            errors.append(cost_error(name, measure.cost, settings.max_cost, definition))
    return errors, measures


def cost_error(
    name: str, cost: int, limit: int, node: OperationDefinitionNode | None = None
) -> GraphQLError:
    """The error of an operation that would cost more than the limit."""
    return GraphQLError(
        f"Operation '{name}' costs {cost}, more than {limit} (GATEWAY_MAX_COST): "
        "ask for fewer fields, smaller limits or fewer aliases.",
        node,
        extensions={"code": COST_LIMIT_EXCEEDED, "cost": cost, "maxCost": limit},
    )


def _aliases(document: DocumentNode) -> Iterable[FieldNode]:
    stack: list[Any] = list(document.definitions)
    while stack:
        node = stack.pop()
        if isinstance(node, FieldNode) and node.alias is not None:
            yield node
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)


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
