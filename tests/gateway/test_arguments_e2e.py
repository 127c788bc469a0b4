"""Extreme argument values through the real materializer and its DuckDB store."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from tests.gateway.conftest import Server

pytestmark = pytest.mark.slow

QUERIES = {
    "sales": (
        "query($f: DateTime, $t: DateTime, $c: String) { salesSummary(from: $f, to: $t, "
        "channel: $c) { orders netRevenue } salesByHour(from: $f, to: $t, channel: $c) "
        "{ hour } topProducts(from: $f, to: $t, limit: 5000) { sku } }"
    ),
    "stock": (
        "query($w: String, $s: String) { stockLevels(warehouse: $w, sku: $s) { sku } "
        "lowStock(warehouse: $w) { sku } stockMovements(warehouse: $w, sku: $s, limit: 1) "
        "{ sku } }"
    ),
    "receivables": (
        "query($d: Date, $c: String, $m: Int) { arAging(asOf: $d) { totalOutstanding "
        "byCustomer(limit: 5000) { customerId } } overdueInvoices(asOf: $d, customerId: $c, "
        "minDaysOverdue: $m) { invoiceId } }"
    ),
    # Every paged list with the same `offset` and `limit`.
    "pages": (
        "query($o: Int, $l: Int) { salesByHour(offset: $o, limit: $l) { hour } "
        "salesByChannel(offset: $o, limit: $l) { channel } stockLevels(offset: $o, "
        "limit: $l) { sku } lowStock(offset: $o, limit: $l) { sku } overdueInvoices("
        "offset: $o, limit: $l) { invoiceId } sites(offset: $o, limit: $l) { site } }"
    ),
}


@pytest.fixture
def server(materializer: Any, settings: Settings, server_factory: Any) -> Server:
    return server_factory(settings)


#: One materializer for all cases: each case is a request, not a test.
EXTREME_BUT_VALID = [
    ("sales", {"f": "0001-01-01T00:00:00Z", "t": "9999-12-31T23:59:59.999999Z"}),
    ("sales", {"f": "9999-12-31T00:00:00Z", "t": "0001-01-01T00:00:00Z"}),
    ("sales", {"c": ""}),
    ("sales", {"c": "ü🙂漢字\u0000'; DROP TABLE sales_hourly; --"}),
    ("stock", {"w": "", "s": ""}),
    ("stock", {"w": "\u0000", "s": "%"}),
    ("stock", {"w": "🙂" * 256, "s": "_"}),
    ("receivables", {"d": "0001-01-01", "c": "ü", "m": -100_000}),
    ("receivables", {"d": "9999-12-31", "c": "", "m": 100_000}),
    ("receivables", {"d": "9999-12-31", "m": 0}),
    ("pages", {"o": 2**31 - 1, "l": 5000}),
    ("pages", {"o": 0, "l": 1}),
    ("pages", {"o": 2**31 - 1}),  # no limit: the whole list from there, empty
    ("pages", {"o": None, "l": None}),
]
OUT_OF_RANGE = [
    ("receivables", {"m": 100_001}, "min_days_overdue"),
    ("receivables", {"m": 2**31}, "32-bit"),
    ("sales", {"f": 1_764_064_800}, "milliseconds"),
    ("stock", {"w": "w" * 257}, "more than 256"),
    ("pages", {"o": -1}, "offset must be 0 or more"),
    ("pages", {"o": -(2**31)}, "offset must be 0 or more"),
    ("pages", {"l": 0}, "limit must be between 1 and 5000"),
    ("pages", {"l": 5001}, "limit must be between 1 and 5000"),
    ("pages", {"o": 2**31}, "32-bit"),
    ("pages", {"l": "ten"}, "Int cannot represent"),
]


async def test_extreme_arguments_are_answered_or_refused_clearly_by_the_real_store(
    server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for query, variables in EXTREME_BUT_VALID:
            response = await http.post(
                "/graphql", json={"query": QUERIES[query], "variables": variables}
            )
            assert response.status_code == 200
            body = response.json()
            assert "errors" not in body, (variables, body)
            assert all(value is not None for value in body["data"].values())
        for query, variables, message in OUT_OF_RANGE:
            response = await http.post(
                "/graphql", json={"query": QUERIES[query], "variables": variables}
            )
            error = response.json()["errors"][0]
            assert error["extensions"]["code"] == "BAD_USER_INPUT", (variables, error)
            assert message in error["message"]
