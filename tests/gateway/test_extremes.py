"""The largest values the contract accepts, end to end: JetStream → materializer →
GraphQL and REST on real uvicorn. No accepted value may break a read (docs/EVENTS.md,
"Limits")."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from gateway.settings import Settings
from tests.conftest import cloud_event, publish_events
from tests.gateway.conftest import Server

pytestmark = pytest.mark.slow

MAX_MONEY = "9999999999999999.99"
MAX_QUANTITY = 1_000_000_000
NOW = dt.datetime.now(dt.UTC).replace(minute=5, second=0, microsecond=0)
HOUR = NOW.replace(minute=0)
FIRST, LAST = "1970-01-01T00:00:00Z", "2199-12-31T23:59:59.999999Z"


def order(order_id: str, *, time: str, channel: str = "web") -> dict[str, Any]:
    return cloud_event(
        "order.created",
        {
            "order_id": order_id,
            "customer_id": "C-1",
            "channel": channel,
            "total_amount": MAX_MONEY,
            "lines": [{"sku": "SKU-MAX", "quantity": MAX_QUANTITY, "unit_price": MAX_MONEY}],
        },
        time=time,
    )


def move(sku: str, delta: int, time: str = NOW.isoformat()) -> dict[str, Any]:
    data = {"sku": sku, "warehouse": "W", "quantity_delta": delta, "reason": "adjustment"}
    return cloud_event("stock.moved", data, time=time)


def invoice(invoice_id: str, due: str) -> dict[str, Any]:
    data = {
        "invoice_id": invoice_id,
        "customer_id": "C-1",
        "amount": MAX_MONEY,
        "issued_on": "1970-01-01",
        "due_date": due,
    }
    return cloud_event("invoice.issued", data, time=NOW.isoformat())


def product(sku: str, reorder_point: int) -> dict[str, Any]:
    data = {
        "sku": sku,
        "name": sku,
        "category": "extreme",
        "reorder_point": reorder_point,
        "unit_cost": MAX_MONEY,
    }
    return cloud_event("product.updated", data, time=NOW.isoformat())


QUERY = """
query($from: DateTime!, $to: DateTime!) {
  web: salesSummary(from: $from, to: $to, channel: "web") {
    orders grossRevenue netRevenue units averageOrderValue
  }
  edges: salesByHour(from: "1970-01-01T00:00:00Z", to: "2200-01-01T00:00:00Z", channel: "edge") {
    hour orders grossRevenue units
  }
  topProducts(from: "1970-01-01T00:00:00Z", to: "2200-01-01T00:00:00Z") { sku units revenue }
  stockLevels { sku onHand reorderPoint lowStock }
  lowStock { sku onHand }
  stockMovements(limit: 10) { quantityDelta }
  arAging(asOf: "2199-12-31") { totalOutstanding openInvoices buckets { over90 current } }
  overdueInvoices(asOf: "2199-12-31") { invoiceId balance daysOverdue }
  pipeline { eventsApplied eventsRejected lastEventTime }
}
"""


@pytest.fixture
def server(materializer: Any, settings: Settings, server_factory: Any) -> Server:
    return server_factory(settings)


async def test_the_largest_accepted_values_read_back_exactly_over_graphql_and_rest(
    server: Server, materializer: Any, js: JetStreamContext
) -> None:
    last = await publish_events(
        js,
        order("O-1", time=NOW.isoformat()),
        order("O-2", time=NOW.isoformat()),
        order("O-3", time=FIRST, channel="edge"),
        order("O-4", time=LAST, channel="edge"),
        *[move("SKU-UP", MAX_QUANTITY) for _ in range(3)],
        *[move("SKU-DOWN", -MAX_QUANTITY) for _ in range(3)],
        move("SKU-UP", 0, time=LAST),
        product("SKU-DOWN", MAX_QUANTITY),
        invoice("I-1", "1970-01-01"),
        invoice("I-2", "2199-12-31"),
    )
    await materializer.wait_for_sequence(last)
    variables = {"from": HOUR.isoformat(), "to": (HOUR + dt.timedelta(hours=1)).isoformat()}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post("/graphql", json={"query": QUERY, "variables": variables})
        assert response.status_code == 200, response.text
        body = json.loads(response.text, parse_float=Decimal)
        assert "errors" not in body, body["errors"]
        data = body["data"]
        # Two hours: the events' hour (NOW is fixed when the module is collected) and,
        # should the suite have crossed an hour since, the current one.
        rest_sales = (await http.get("/query/sales/hourly", params={"hours": 2})).text
        rest_low = (await http.get("/query/inventory/low-stock")).json()
        rest_overdue = json.loads(
            (await http.get("/query/ar/overdue", params={"as_of": "2199-12-31"})).text,
            parse_float=Decimal,
        )

    assert data["web"] == {
        "orders": 2,
        "grossRevenue": Decimal("19999999999999999.98"),
        "netRevenue": Decimal("19999999999999999.98"),
        "units": 2 * MAX_QUANTITY,
        "averageOrderValue": Decimal(MAX_MONEY),
    }
    assert data["edges"] == [
        {
            "hour": "1970-01-01T00:00:00+00:00",
            "orders": 1,
            "grossRevenue": Decimal(MAX_MONEY),
            "units": MAX_QUANTITY,
        },
        {
            "hour": "2199-12-31T23:00:00+00:00",
            "orders": 1,
            "grossRevenue": Decimal(MAX_MONEY),
            "units": MAX_QUANTITY,
        },
    ]
    assert data["topProducts"] == [
        {
            "sku": "SKU-MAX",
            "units": 4 * MAX_QUANTITY,
            "revenue": Decimal("39999999999999999960000000.00"),
        }
    ]
    levels = {row["sku"]: row for row in data["stockLevels"]}
    assert levels["SKU-UP"]["onHand"] == 3 * MAX_QUANTITY
    assert levels["SKU-DOWN"] == {
        "sku": "SKU-DOWN",
        "onHand": -3 * MAX_QUANTITY,
        "reorderPoint": MAX_QUANTITY,
        "lowStock": True,
    }
    assert data["lowStock"] == [{"sku": "SKU-DOWN", "onHand": -3 * MAX_QUANTITY}]
    assert {row["quantityDelta"] for row in data["stockMovements"]} == {
        MAX_QUANTITY,
        -MAX_QUANTITY,
        0,
    }
    assert data["arAging"] == {
        "totalOutstanding": Decimal("19999999999999999.98"),
        "openInvoices": 2,
        "buckets": {"over90": Decimal(MAX_MONEY), "current": Decimal(MAX_MONEY)},
    }
    assert data["overdueInvoices"] == [
        {
            "invoiceId": "I-1",
            "balance": Decimal(MAX_MONEY),
            "daysOverdue": (dt.date(2199, 12, 31) - dt.date(1970, 1, 1)).days,
        }
    ]
    assert data["pipeline"] == {
        "eventsApplied": last,
        "eventsRejected": 0,
        "lastEventTime": "2199-12-31T23:59:59.999999+00:00",
    }
    # REST: the same values, money as exact JSON numbers.
    assert '"gross_revenue":19999999999999999.98' in rest_sales
    assert f'"units":{2 * MAX_QUANTITY}' in rest_sales
    assert [(row["sku"], row["on_hand"]) for row in rest_low["data"]] == [
        ("SKU-DOWN", -3 * MAX_QUANTITY)
    ]
    [overdue] = rest_overdue["data"]
    assert (overdue["invoice_id"], overdue["balance"]) == ("I-1", Decimal(MAX_MONEY))
