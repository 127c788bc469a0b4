"""The exported schema and the API contract: schema.graphql must not drift."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from graphql import build_schema

from gateway.cli import gateway_command
from gateway.schema import export_schema

ROOT = Path(__file__).resolve().parents[2]

QUERY_FIELDS = {
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


def test_query_and_subscription_have_the_api_fields_with_the_same_arguments() -> None:
    schema = build_schema(export_schema())
    query, subscription = schema.query_type, schema.subscription_type
    assert query is not None and subscription is not None
    assert set(query.fields) == QUERY_FIELDS
    assert set(subscription.fields) == QUERY_FIELDS
    for name in QUERY_FIELDS:
        q, s = query.fields[name], subscription.fields[name]
        assert str(q.type) == str(s.type)
        assert {a: str(t.type) for a, t in q.args.items()} == {
            a: str(t.type) for a, t in s.args.items()
        }


def test_api_types_match_docs_api_md() -> None:
    schema = build_schema(export_schema())
    expected = {
        "salesByHour": (
            "[HourlySales!]!",
            {"from": "DateTime", "to": "DateTime", "channel": "String"},
        ),
        "topProducts": ("[ProductSales!]!", {"from": "DateTime", "to": "DateTime", "limit": "Int"}),
        "arAging": ("ArAging!", {"asOf": "Date"}),
        "overdueInvoices": (
            "[OverdueInvoice!]!",
            {"asOf": "Date", "minDaysOverdue": "Int", "customerId": "String"},
        ),
        "pipeline": ("Pipeline!", {}),
    }
    query = schema.query_type
    assert query is not None
    for name, (type_, args) in expected.items():
        field = query.fields[name]
        assert str(field.type) == type_
        assert {a: str(t.type) for a, t in field.args.items()} == args
    money = schema.get_type("HourlySales").fields["netRevenue"]  # type: ignore[union-attr]
    assert str(money.type) == "Money!"
    sequence = schema.get_type("StockMovement").fields["sequence"]  # type: ignore[union-attr]
    assert str(sequence.type) == "BigInt!"
