"""The simulator's expected aggregates and the materializer's answers agree on one scenario.

The two are written independently (plain Python rules here, DuckDB SQL there); feeding the
same stream to both and comparing every named query catches a mistake in either.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from materializer.store import RawMessage, Store
from pulse_bi.simulator import generate
from pulse_bi.simulator.events import stored_by_stream

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AS_OF = date(2026, 11, 25)
ALL_TIME = {"from": "2000-01-01T00:00:00+00:00", "to": "2100-01-01T00:00:00+00:00"}


def query_all(store: Store, name: str, params: dict[str, Any]) -> Any:
    """A named query's whole result, following ``next_offset`` pages."""
    rows: list[Any] = []
    page = dict(params)
    while True:
        result = store.query(name, page)
        if not isinstance(result.wire, list):
            return result.wire
        rows.extend(result.wire)
        if result.next_offset is None:
            return rows
        page["offset"] = result.next_offset


def test_expected_aggregates_equal_the_materializers_named_queries(tmp_path: Path) -> None:
    scenario = generate(31, 12_000, out_of_order=0.1, duplicates=0.05, bad=0.02, end=END)
    expected = scenario.expected(AS_OF)
    # What JetStream stores, numbered in order as its stream sequence.
    stored = [
        RawMessage(sequence, message.subject, message.data, END)
        for sequence, message in enumerate(stored_by_stream(scenario.messages), start=1)
    ]
    assert len(stored) == expected["counts"]["in_stream"]

    store = Store.open(tmp_path / "agreement.duckdb")
    try:
        for start in range(0, len(stored), 3000):
            store.apply_batch(stored[start : start + 3000])
        assert query_all(store, "sales_by_hour", ALL_TIME) == expected["sales_by_hour"]
        for channel, rows in expected["sales_by_hour_by_channel"].items():
            assert query_all(store, "sales_by_hour", {**ALL_TIME, "channel": channel}) == rows
        assert query_all(store, "sales_by_channel", ALL_TIME) == expected["sales_by_channel"]
        assert len(expected["sales_by_channel"]) > 1
        assert query_all(store, "stock_levels", {}) == expected["stock_levels"]
        assert query_all(store, "low_stock", {}) == expected["low_stock"]
        as_of = {"as_of": AS_OF.isoformat()}
        assert query_all(store, "ar_aging", as_of) == expected["ar_aging"]
        assert query_all(store, "overdue_invoices", as_of) == expected["overdue_invoices"]
        top = store.query("top_products", {**ALL_TIME, "limit": 10}).wire
        assert top == expected["top_products"]
        pipeline = query_all(store, "pipeline", {})
        assert pipeline["events_applied"] == expected["counts"]["applied"]
        assert pipeline["events_rejected"] == expected["counts"]["rejected"]
    finally:
        store.close()
