"""Document limits: depth and cost measured in one pass, cost refusals, introspection."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, get_introspection_query, parse

from gateway.app import create_app, state
from gateway.limits import Measure, Measurer, list_field_sizes
from gateway.schema import schema
from gateway.settings import Settings
from tests.gateway.conftest import Canned, until

GR = "application/graphql-response+json"
OVERDUE_FIELDS = (
    "invoiceId customerId customerName orderId amount paid balance issuedOn dueDate "
    "daysOverdue bucket"
)

ALIASED_OVERDUE = (
    "{ "
    + " ".join(
        f'a{i}: overdueInvoices(asOf: "9999-12-31") {{ {OVERDUE_FIELDS} }}' for i in range(30)
    )
    + " }"
)


def measure(query: str, variables: dict[str, Any] | None = None) -> Measure:
    document = parse(query, max_tokens=100_000)
    measurer = Measurer(schema._schema, document, list_field_sizes(schema._schema), variables)
    (operation,) = (d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return measurer.operation(operation)


def fan_out(fragments: int) -> str:
    """Each fragment spreads the next twice: 2^n paths through a short document."""
    chain = " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(fragments)
    )
    return f"query Fan {{ ...F0 }} {chain} fragment F{fragments} on Query {{ pipeline {{ lag }} }}"


def test_fragment_fan_out_is_measured_once_per_fragment() -> None:
    small, large = fan_out(4), fan_out(24)
    assert measure(small).cost == 2 * 2**4
    started = time.perf_counter()
    result = measure(large)
    elapsed = time.perf_counter() - started
    # 2^24 paths, each `pipeline { lag }` (cost 2): counted, not walked.
    assert result.cost == 2 * 2**24
    assert result.depth == 2
    # Walking every path took 30 s; measuring each fragment once takes well under 1 s.
    assert elapsed < 1.0


@pytest.mark.parametrize(
    ("query", "cost"),
    [
        ("{ pipeline { lag } }", 2),
        # A list: each item costs 1 plus its fields, times the default `limit` (10).
        ("{ topProducts { sku revenue } }", 10 * 3),
        ("{ topProducts(limit: 200) { sku revenue } }", 200 * 3),
        # Lists without a limit count as one materializer page (1,000 rows).
        (f"{{ overdueInvoices {{ {OVERDUE_FIELDS} }} }}", 1000 * 12),
        (f"{{ overdueInvoices(limit: null) {{ {OVERDUE_FIELDS} }} }}", 1000 * 12),
        # A paged list's `limit` is its size; `offset` changes nothing.
        (f"{{ overdueInvoices(limit: 20, offset: 9) {{ {OVERDUE_FIELDS} }} }}", 20 * 12),
        ("{ salesByHour(limit: 5) { hour orders } }", 5 * 3),
        # salesByHour: one row per hour of the window (24 by default).
        ("{ salesByHour { hour orders } }", 24 * 3),
        (
            '{ salesByHour(from: "2026-11-01T00:00:00Z", to: "2026-11-02T00:00:00Z") '
            "{ hour orders } }",
            25 * 3,
        ),
        # Nested lists multiply: 1 + 100 customers x 2.
        ("{ arAging { openInvoices byCustomer { customerId } } }", 1 + 1 + 100 * 2),
        # Aliases add up.
        (
            ALIASED_OVERDUE,
            30 * 12_000,
        ),
    ],
)
def test_cost_is_fields_times_the_list_sizes_arguments_allow(query: str, cost: int) -> None:
    assert measure(query).cost == cost


def test_list_sizes_from_variables_are_measured_with_the_request_values() -> None:
    query = "query($n: Int) { topProducts(limit: $n) { sku } }"
    unknown = measure(query)
    assert unknown.uses_variables and unknown.cost == 5000 * 2
    assert measure(query, {"n": 7}).cost == 7 * 2
    assert measure(query, {}).cost == 10 * 2  # absent: the argument's default
    paged = "query($n: Int) { lowStock(limit: $n) { sku } }"
    assert measure(paged, {"n": 7}).cost == 7 * 2
    assert measure(paged, {"n": None}).cost == 1000 * 2  # null: the whole list, one page


def test_standard_introspection_is_within_the_default_limits() -> None:
    defaults = Settings()
    for query in (
        get_introspection_query(),
        get_introspection_query(True, True, True, True, True, True, True),
    ):
        result = measure(query)
        assert result.depth == 0
        assert result.introspection_depth <= defaults.max_introspection_depth
        assert result.cost <= defaults.max_cost
    # Two full introspections fit; three do not (each is bounded by the schema's size).
    one = measure(get_introspection_query()).cost
    assert 3 * one > defaults.max_cost


@pytest.fixture
async def strict(settings: Settings, canned: Canned) -> Any:
    app = create_app(settings.replace(max_cost=5000, introspection=False))
    async with app.router.lifespan_context(app):
        await until(lambda: state(app).upstream.connected)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


async def test_costly_operation_is_refused_with_its_cost(strict: httpx.AsyncClient) -> None:
    query = f"{{ overdueInvoices {{ {OVERDUE_FIELDS} }} }}"
    response = await strict.post("/graphql", json={"query": query}, headers={"accept": GR})
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "COST_LIMIT_EXCEEDED", "cost": 12000, "maxCost": 5000}
    assert "costs 12000, more than 5000" in error["message"]
    assert "data" not in response.json()


async def test_cost_with_variables_is_checked_per_request(strict: httpx.AsyncClient) -> None:
    query = "query Top($n: Int) { topProducts(limit: $n) { sku name units revenue } }"
    small = await strict.post("/graphql", json={"query": query, "variables": {"n": 5}})
    assert small.status_code == 200 and small.json()["data"]["topProducts"][0]["sku"] == "SKU-1"
    large = await strict.post(
        "/graphql", json={"query": query, "variables": {"n": 5000}}, headers={"accept": GR}
    )
    assert large.status_code == 400
    assert large.json()["errors"][0]["extensions"]["cost"] == 5000 * 5


async def test_fan_out_too_costly_for_any_variables_is_refused_before_validation(
    strict: httpx.AsyncClient,
) -> None:
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(20))
    query = (
        f"query Fan($n: Int) {{ ...F0 }} {chain} "
        "fragment F20 on Query { topProducts(limit: $n) { sku } }"
    )
    started = time.perf_counter()
    response = await strict.post("/graphql", json={"query": query}, headers={"accept": GR})
    assert time.perf_counter() - started < 1.0
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"


async def test_no_suggestions_leak_names_when_introspection_is_off(
    strict: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    query = "query($from: DateTime) { salesSumary(from: $from) { orders } }"
    open_ = await client.post("/graphql", json={"query": query})
    assert "Did you mean 'salesSummary'" in open_.json()["errors"][0]["message"]
    closed = await strict.post("/graphql", json={"query": query})
    message = closed.json()["errors"][0]["message"]
    assert "Cannot query field 'salesSumary'" in message
    assert "Did you mean" not in message and "salesSummary" not in message
    typo = await strict.post("/graphql", json={"query": "{ pipeline { lagg } }"})
    assert "Did you mean" not in typo.json()["errors"][0]["message"]


async def test_introspection_answers_on_defaults(client: httpx.AsyncClient) -> None:
    query = get_introspection_query(True, True, True, True, True, True, True)
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Query", "Subscription", "DateTime", "Money", "OverdueInvoice"} <= names
