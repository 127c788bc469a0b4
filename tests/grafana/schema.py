"""The gateway's GraphQL schema as the dashboards see it, for static checks of panels.

The source is ``schema.graphql`` at the repository root, which the gateway's tests keep
equal to the schema it serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from graphql import (
    FieldNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    get_named_type,
    parse,
)

from tests.grafana.infinity import ROOT

#: GraphQL scalars each Infinity column type may read.
COMPATIBLE = {
    "number": {"Int", "Float", "Money", "BigInt"},
    "string": {"String", "ID", "Date"},
    "timestamp": {"DateTime"},
    "boolean": {"Boolean"},
}

#: Argument types that carry a point in time (must come from the dashboard's range).
TIME_SCALARS = {"DateTime", "Date"}


@cache
def gateway_schema() -> GraphQLSchema:
    """The schema the gateway serves, from the exported ``schema.graphql``."""
    return build_schema((ROOT / "schema.graphql").read_text())


@dataclass(frozen=True)
class Selected:
    """A field a column selector reaches: its GraphQL type name and nullability."""

    type_name: str
    nullable: bool
    is_list: bool


def root_fields(document: str) -> list[FieldNode]:
    """The top-level fields of the (single) query operation of a document."""
    operations = [d for d in parse(document).definitions if isinstance(d, OperationDefinitionNode)]
    assert len(operations) == 1, "a panel sends exactly one operation"
    return [s for s in operations[0].selection_set.selections if isinstance(s, FieldNode)]


def _child(node: FieldNode, name: str) -> FieldNode | None:
    if node.selection_set is None:
        return None
    for selection in node.selection_set.selections:
        if isinstance(selection, FieldNode) and (selection.alias or selection.name).value == name:
            return selection
    return None


def _unwrap(type_: object) -> tuple[object, bool, bool]:
    nullable = not isinstance(type_, GraphQLNonNull)
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    is_list = isinstance(inner, GraphQLList)
    return get_named_type(inner), nullable, is_list  # type: ignore[arg-type]


def resolve_path(document: str, path: str) -> Selected | None:
    """The schema field a JSON path of the answer (``data.a.b``) reaches, if selected.

    Numeric parts index lists. None when the document does not select the path.
    """
    parts = path.split(".")
    assert parts[0] == "data", f"{path!r}: GraphQL answers keep their fields under 'data'"
    schema = gateway_schema()
    parent: GraphQLObjectType = schema.query_type  # type: ignore[assignment]
    nodes = {(f.alias or f.name).value: f for f in root_fields(document)}
    node: FieldNode | None = None
    selected: Selected | None = None
    for part in parts[1:]:
        if part.isdigit():
            if selected is None or not selected.is_list:
                return None
            selected = Selected(selected.type_name, True, False)
            continue
        node = nodes.get(part) if node is None else _child(node, part)
        if node is None:
            return None
        field: GraphQLField | None = parent.fields.get(node.name.value)
        if field is None:
            return None
        named, nullable, is_list = _unwrap(field.type)
        selected = Selected(named.name, nullable, is_list)  # type: ignore[attr-defined]
        if isinstance(named, GraphQLObjectType):
            parent = named
    return selected


def resolve_column(document: str, root_selector: str, selector: str) -> Selected | None:
    """The schema field one column reads, relative to the rows the root selector picks."""
    root = resolve_path(document, root_selector)
    if root is None:
        return None
    # Rows are the items of a list root, or the root object itself.
    return resolve_path(document, f"{root_selector}.{selector}")
