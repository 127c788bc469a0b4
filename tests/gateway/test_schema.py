"""The exported schema and the API contract: schema.graphql must not drift."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from graphql import GraphQLObjectType, Undefined, build_schema

from gateway.cli import gateway_command
from gateway.schema import export_schema
from pulse_bi.contract import QUERIES

ROOT = Path(__file__).resolve().parents[2]

#: The API core every release keeps (more fields may follow).
CORE_FIELDS = {
    "salesByHour",
    "salesSummary",
    "topProducts",
    "stockLevels",
    "lowStock",
    "stockMovements",
    "arAging",
    "overdueInvoices",
    "rejectedEvents",
    "pipeline",
}
DOCS = ROOT / "docs" / "API.md"


def test_schema_graphql_matches_the_exported_schema() -> None:
    checked_in = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert checked_in == export_schema(), (
        "schema.graphql is stale: run `pulse-bi gateway export-schema -o schema.graphql`"
    )


def test_export_schema_command_writes_the_same_sdl(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    result = CliRunner().invoke(gateway_command, ["export-schema", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == export_schema()


def test_query_and_subscription_have_one_field_per_spec_with_the_same_arguments() -> None:
    schema = build_schema(export_schema())
    query, subscription = schema.query_type, schema.subscription_type
    assert query is not None and subscription is not None
    # The registry's fields, then those that are not named queries (docs/ALERTS.md).
    fields = [spec.field for spec in QUERIES] + ["alerts"]
    assert list(query.fields) == fields
    assert list(subscription.fields) == fields
    assert set(fields) >= CORE_FIELDS
    for name in fields:
        q, s = query.fields[name], subscription.fields[name]
        assert str(q.type) == str(s.type)
        assert {a: str(t.type) for a, t in q.args.items()} == {
            a: str(t.type) for a, t in s.args.items()
        }


def _fenced(text: str, after: str) -> str:
    """The first ```graphql block after the line starting with `after`."""
    start = text.index("\n" + after)
    block = text.index("```graphql\n", start) + len("```graphql\n")
    return text[block : text.index("```", block)]


def test_api_types_match_docs_api_md() -> None:
    """docs/API.md's query signatures and types are the schema's, argument by argument."""
    text = DOCS.read_text(encoding="utf-8")
    scalars = "scalar DateTime scalar Date scalar Money scalar BigInt\n"
    documented = build_schema(
        scalars + "type Query {\n" + _fenced(text, "Queries") + "}\n" + _fenced(text, "Types")
    )
    schema = build_schema(export_schema())
    query, doc_query = schema.query_type, documented.query_type
    assert query is not None and doc_query is not None
    assert set(doc_query.fields) == set(query.fields), "docs/API.md lists other queries"
    for name, field in query.fields.items():
        doc = doc_query.fields[name]
        assert str(doc.type) == str(field.type), name
        assert {a: str(t.type) for a, t in doc.args.items()} == {
            a: str(t.type) for a, t in field.args.items()
        }, name
        for arg, value in doc.args.items():
            if value.default_value is not Undefined:
                assert value.default_value == field.args[arg].default_value, (name, arg)
    for type_name, doc_type in documented.type_map.items():
        if type_name.startswith("__") or type_name in ("Query", "String", "Int", "Boolean"):
            continue
        real = schema.get_type(type_name)
        assert real is not None, f"docs/API.md documents an unknown type {type_name}"
        if isinstance(doc_type, GraphQLObjectType):
            assert isinstance(real, GraphQLObjectType)
            assert {f: str(v.type) for f, v in doc_type.fields.items()} == {
                f: str(v.type) for f, v in real.fields.items()
            }, type_name
    documented_types = {t for t in documented.type_map if not t.startswith("__")}
    output_types = {
        t.name
        for t in schema.type_map.values()
        if isinstance(t, GraphQLObjectType)
        and not t.name.startswith("__")
        and t.name not in ("Query", "Subscription")
    }
    assert output_types <= documented_types, "types missing from docs/API.md"
