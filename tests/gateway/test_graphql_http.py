"""GraphQL over HTTP in-process: queries, scalars, status codes, limits and the caches."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from graphql import GraphQLObjectType, get_named_type

from gateway.app import state
from gateway.schema import schema
from pulse_bi.contract import QUERIES, QUERY_NAMES
from tests.gateway.conftest import ROWS, Canned, until

GR = "application/graphql-response+json"


async def gql(
    client: httpx.AsyncClient, query: str, variables: Any = None, accept: str = "application/json"
) -> httpx.Response:
    body = {"query": query, "variables": variables}
    return await client.post("/graphql", json=body, headers={"accept": accept})


async def test_sales_by_hour_returns_money_as_exact_json_numbers(client: httpx.AsyncClient) -> None:
    response = await gql(
        client,
        '{ salesByHour(from: "2026-11-25T00:00:00Z", to: "2026-11-26T00:00:00Z") '
        "{ hour orders cancelledOrders grossRevenue netRevenue averageOrderValue units } }",
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    text = response.text
    # Exact decimal text on the wire, not a string and not a binary-rounded float.
    assert '"grossRevenue":300.10' in text
    assert '"averageOrderValue":100.05' in text
    row = response.json()["data"]["salesByHour"][0]
    assert row["hour"] == "2026-11-25T10:00:00+00:00"
    assert row["orders"] == 3 and row["units"] == 7 and row["cancelledOrders"] == 1


async def test_variables_null_is_accepted_as_grafana_sends_it(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ pipeline { lastSequence lag } }", "variables": null}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"pipeline": {"lastSequence": 12, "lag": 0}}}


@pytest.mark.parametrize(
    ("literal", "expected_from"),
    [
        ("1795564800000", "2026-11-25T00:00:00+00:00"),  # epoch ms as a number literal
        ('"1795564800000"', "2026-11-25T00:00:00+00:00"),  # Grafana's ${__from} as text
        ('"2026-11-25T01:00:00+01:00"', "2026-11-25T00:00:00+00:00"),  # ISO with offset
    ],
)
async def test_time_arguments_accept_iso_and_epoch_milliseconds(
    client: httpx.AsyncClient, canned: Canned, literal: str, expected_from: str
) -> None:
    response = await gql(
        client, f"{{ salesByHour(from: {literal}, to: 1795651200000) {{ hour }} }}"
    )
    assert response.status_code == 200, response.text
    assert "errors" not in response.json()
    name, params = canned.requests[-1]
    assert name == "sales_by_hour"
    assert params["from"] == expected_from
    assert params["to"] == "2026-11-26T00:00:00+00:00"


async def test_epoch_millisecond_variables_too_big_for_int_are_accepted(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    response = await gql(
        client,
        "query($from: DateTime, $to: DateTime) { salesSummary(from: $from, to: $to) "
        "{ from to netRevenue } }",
        {"from": 1795564800000, "to": 1795651200000},
    )
    assert response.status_code == 200, response.text
    summary = response.json()["data"]["salesSummary"]
    assert summary["from"] == "2026-11-25T00:00:00+00:00"
    assert summary["netRevenue"] == 200.1


async def test_time_without_offset_is_a_clear_error(client: httpx.AsyncClient) -> None:
    response = await gql(client, '{ salesByHour(from: "2026-11-25T00:00:00") { hour } }', accept=GR)
    assert response.status_code == 400
    assert "timezone offset" in response.json()["errors"][0]["message"]


#: What the gateway asks the materializer for: no customers unless ``byCustomer`` is there.
AGING_DOCUMENTS = [
    ("{ arAging { totalOutstanding openInvoices buckets { over90 } } }", [0]),
    ("{ arAging { byCustomer { customerId } } }", [100]),
    ("{ arAging { c: byCustomer(limit: 2) { customerId } } }", [100]),
    ("fragment F on ArAging { byCustomer { customerId } } { arAging { ...F } }", [100]),
    ("{ arAging { ... on ArAging { ... on ArAging { byCustomer { customerId } } } } }", [100]),
    ("{ a: arAging { asOf } b: arAging { byCustomer { customerId } } }", [0, 100]),
]


@pytest.mark.parametrize(("document", "limits"), AGING_DOCUMENTS)
async def test_the_aging_fetches_customers_only_for_a_query_that_lists_them(
    client: httpx.AsyncClient, canned: Canned, document: str, limits: list[int]
) -> None:
    response = await gql(client, document)
    body = response.json()
    assert "errors" not in body, response.text
    asked = [p.get("customer_limit", 100) for name, p in canned.requests if name == "ar_aging"]
    assert sorted(asked) == limits
    customers = json.dumps(body["data"]).count('"customerId": "C-1"')
    assert customers == (1 if 100 in limits else 0)


async def test_customers_missed_by_the_selection_are_fetched_when_resolved(
    client: httpx.AsyncClient, canned: Canned, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Should the selection ever be misread, byCustomer asks for its customers itself
    # rather than answering with none.
    monkeypatch.setattr("gateway.schema.receivables._selects", lambda *_: False)
    response = await gql(client, "{ arAging { byCustomer(limit: 1) { customerId } } }")
    assert response.json()["data"]["arAging"]["byCustomer"] == [{"customerId": "C-1"}]
    asked = [p.get("customer_limit", 100) for name, p in canned.requests if name == "ar_aging"]
    assert asked == [0, 1]


async def test_every_domain_answers_with_contract_types(client: httpx.AsyncClient) -> None:
    response = await gql(
        client,
        """{
          topProducts(limit: 5) { sku name units revenue }
          stockLevels { sku warehouse onHand reorderPoint lowStock lastMovementAt }
          lowStock(warehouse: "WH-1") { sku onHand }
          stockMovements { sequence time quantityDelta reason }
          arAging(asOf: "2026-11-25") { asOf totalOutstanding openInvoices
            buckets { current days1To30 days31To60 days61To90 over90 total }
            byCustomer(limit: 1) { customerId customerName total openInvoices } }
          overdueInvoices(minDaysOverdue: 1) {
            invoiceId balance issuedOn dueDate daysOverdue bucket }
          rejectedEvents { sequence }
          pipeline { version lastSequence streamLastSequence lag eventsApplied eventsRejected
            batches lastEventTime lastBatchAt status reason gapCount eventsMissing
            gaps { fromSequence toSequence events detectedAt } }
        }""",
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["topProducts"] == [{"sku": "SKU-1", "name": "Widget", "units": 5, "revenue": 150}]
    assert data["stockMovements"][0]["sequence"] == 4_000_000_000
    assert data["arAging"]["buckets"]["over90"] == 5.55
    assert data["arAging"]["totalOutstanding"] == 35.55
    assert data["arAging"]["byCustomer"][0]["customerName"] == "Acme"
    assert data["overdueInvoices"][0]["dueDate"] == "2026-10-31"
    assert data["pipeline"]["eventsRejected"] == 1
    assert data["pipeline"]["status"] == "degraded"
    assert (data["pipeline"]["gapCount"], data["pipeline"]["eventsMissing"]) == (1, 3)
    assert data["pipeline"]["gaps"] == [
        {"fromSequence": 4, "toSequence": 6, "events": 3, "detectedAt": "2026-11-25T10:04:06+00:00"}
    ]


def _selection(type_: Any) -> str:
    """Every field of an output type, nested ones included (arguments left default)."""
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType):
        return ""
    return (
        "{ " + " ".join(f"{name} {_selection(f.type)}" for name, f in named.fields.items()) + " }"
    )


async def test_every_registry_field_resolves_every_output_field(
    client: httpx.AsyncClient,
) -> None:
    """A spec's rows decode, and every field of its type resolves, for every query."""
    assert set(ROWS) == set(QUERY_NAMES), "canned rows for every named query"
    query_type = schema._schema.query_type
    assert query_type is not None
    fields = " ".join(
        f"{spec.field} {_selection(query_type.fields[spec.field].type)}" for spec in QUERIES
    )
    response = await gql(client, "{ " + fields + " }")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    assert set(body["data"]) == {spec.field for spec in QUERIES}
    assert body["data"]["salesByChannel"][0]["netRevenue"] == 200.1


def five_rows_in_pages_of_two(canned: Canned, name: str, field: str, prefix: str) -> None:
    """Five rows of ``name`` whose ``field`` is ``prefix`` + 0…4, served two per page."""
    canned.page = 2
    canned.data[name] = [{**canned.data[name][0], field: f"{prefix}{i}"} for i in range(5)]


async def test_paged_named_query_results_are_joined(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    five_rows_in_pages_of_two(canned, "stock_levels", "sku", "SKU-")
    response = await gql(client, "{ stockLevels { sku } }")
    skus = [row["sku"] for row in response.json()["data"]["stockLevels"]]
    assert skus == [f"SKU-{i}" for i in range(5)]
    offsets = [p.get("offset") for n, p in canned.requests if n == "stock_levels"]
    assert offsets == [None, 2, 4]


async def test_a_limit_asks_for_one_page_and_an_offset_alone_reads_to_the_end(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    """A dashboard showing the first rows of a growing list pays for them only."""
    five_rows_in_pages_of_two(canned, "overdue_invoices", "invoice_id", "INV-")

    async def invoices(arguments: str) -> tuple[Any, list[dict[str, Any]]]:
        canned.requests.clear()
        response = await gql(client, f"{{ overdueInvoices{arguments} {{ invoiceId }} }}")
        body = response.json()
        asked = [p for n, p in canned.requests if n == "overdue_invoices"]
        if "errors" in body:
            return body["errors"][0], asked
        return [row["invoiceId"] for row in body["data"]["overdueInvoices"]], asked

    rows, asked = await invoices("(limit: 2)")
    assert rows == ["INV-0", "INV-1"]
    assert [(p.get("offset"), p.get("limit")) for p in asked] == [(None, 2)]
    rows, asked = await invoices("(offset: 1, limit: 3)")
    # The canned service's pages are 2 rows: a limit is one request, not a whole list.
    assert rows == ["INV-1", "INV-2"]
    assert [(p.get("offset"), p.get("limit")) for p in asked] == [(1, 3)]
    rows, asked = await invoices("(offset: 3)")
    assert rows == ["INV-3", "INV-4"]
    assert [p.get("offset") for p in asked] == [3]
    rows, asked = await invoices("(offset: null, limit: null)")
    assert rows == [f"INV-{i}" for i in range(5)]
    assert [p.get("offset") for p in asked] == [None, 2, 4]
    # The first page alone is cached apart from the whole list.
    rows, _ = await invoices("(limit: 1000)")
    assert rows == ["INV-0", "INV-1"]
    for arguments, message in [
        ("(offset: -1)", "offset must be 0 or more, got -1"),
        ("(limit: 0)", "limit must be between 1 and 5000, got 0"),
        ("(limit: 5001)", "limit must be between 1 and 5000, got 5001"),
        ("(limit: 2147483648)", "32-bit"),
    ]:
        error, asked = await invoices(arguments)
        assert message in error["message"], (arguments, error)
        assert asked == []


async def test_materializer_bad_request_becomes_bad_user_input(client: httpx.AsyncClient) -> None:
    response = await gql(client, '{ salesByHour(from: "2000-01-01T00:00:00Z") { hour } }')
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["message"] == "from is too old"
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_repeated_query_between_changes_does_not_reach_the_materializer(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    gateway = state(client.app)  # type: ignore[attr-defined]
    await canned.heartbeat_until_known(gateway.versions)
    query = "{ lowStock { sku onHand } }"
    for _ in range(5):
        assert (await gql(client, query)).status_code == 200
    assert [n for n, _ in canned.requests].count("low_stock") == 1
    # A sales change leaves stock results cached; a stock change does not.
    await canned.notify(["sales", "pipeline"], sales_hours=["2026-11-25T10:00:00+00:00"])
    await until(lambda: gateway.versions.seen == canned.version)
    await gql(client, query)
    assert [n for n, _ in canned.requests].count("low_stock") == 1
    canned.data["low_stock"] = []
    await canned.notify(["stock", "pipeline"], skus=["SKU-1"], warehouses=["WH-1"])
    await until(lambda: gateway.versions.seen == canned.version)
    assert (await gql(client, query)).json() == {"data": {"lowStock": []}}
    assert [n for n, _ in canned.requests].count("low_stock") == 2


async def test_missed_notice_detected_by_heartbeat_refreshes_the_cache(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    gateway = state(client.app)  # type: ignore[attr-defined]
    await canned.heartbeat_until_known(gateway.versions)
    await gql(client, "{ pipeline { lastSequence } }")
    canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 99}
    canned.version += 5  # changes happened, their notices were lost
    await canned.heartbeat()
    await until(lambda: gateway.versions.seen == canned.version)
    response = await gql(client, "{ pipeline { lastSequence } }")
    assert response.json()["data"]["pipeline"]["lastSequence"] == 99
    assert gateway.versions.gaps == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"query": "{"}', 400),
        (b'{"query": "{ noSuchField }"}', 400),
        (b'{"query": "query($n: Int!) { __typename }", "variables": {"n": "x"}}', 400),
        (b'{"query": "query($n: Int!) { __typename }", "variables": null}', 400),
    ],
)
async def test_request_errors_are_400_without_data_for_graphql_response_json(
    client: httpx.AsyncClient, body: bytes, status: int
) -> None:
    headers = {"content-type": "application/json", "accept": GR}
    response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith(GR)
    assert "data" not in response.json()
    assert response.json()["errors"][0]["message"]
    # The legacy media type keeps 200 for the same request.
    legacy = await client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert legacy.status_code == 200
    assert legacy.json()["errors"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"query": ', "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "empty"),
        (b'{"query": 1}', "application/json", 400, "'query' must be a string"),
        (b'{"query": "{ __typename }", "variables": "x"}', "application/json", 400, "variables"),
        (b'{"query": "{ __typename }"}', "text/plain", 415, "application/json"),
        (b'{"query": "' + b" " * (2 << 20) + b'"}', "application/json", 413, "larger than"),
    ],
)
async def test_malformed_http_requests_get_clear_4xx(
    client: httpx.AsyncClient, body: bytes, content_type: str, status: int, message: str
) -> None:
    response = await client.post("/graphql", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert message in response.json()["errors"][0]["message"]


async def test_get_queries_work_and_mutations_on_get_are_405(client: httpx.AsyncClient) -> None:
    ok = await client.get("/graphql", params={"query": "{ pipeline { lag } }", "variables": "{}"})
    assert ok.status_code == 200 and ok.json()["data"]["pipeline"]["lag"] == 0
    sub = await client.get("/graphql", params={"query": "subscription { pipeline { lag } }"})
    assert sub.status_code == 405
    assert sub.headers["allow"] == "POST"


async def test_subscription_over_http_post_points_to_websocket(client: httpx.AsyncClient) -> None:
    response = await gql(client, "subscription { pipeline { lag } }", accept=GR)
    assert response.status_code == 400
    assert "WebSocket" in response.json()["errors"][0]["message"]


async def test_graphiql_is_served_to_browsers(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_unacceptable_accept_header_is_406(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"accept": "text/csv"}
    )
    assert response.status_code == 406
    assert json.loads(response.text)["errors"]


@pytest.mark.parametrize(
    "literal", ['"2026-11-25"', '"2026-11-25T23:30:00-00:30"', "1795650000000", '"1795650000000"']
)
async def test_date_arguments_accept_dates_date_times_and_epoch_milliseconds(
    client: httpx.AsyncClient, canned: Canned, literal: str
) -> None:
    response = await gql(client, f"{{ arAging(asOf: {literal}) {{ asOf }} }}")
    assert response.status_code == 200, response.text
    name, params = canned.requests[-1]
    assert (name, params["as_of"]) == (
        "ar_aging",
        "2026-11-26" if "-00:30" in literal else "2026-11-25",
    )


async def test_bad_date_is_a_clear_error(client: httpx.AsyncClient) -> None:
    response = await gql(client, '{ arAging(asOf: "next tuesday") { asOf } }', accept=GR)
    assert response.status_code == 400
    assert "Date must be YYYY-MM-DD" in response.json()["errors"][0]["message"]


def test_response_cache_keeps_one_entry_per_request_across_generations() -> None:
    """Under ingest every batch is a new generation: old bodies are replaced, not piled up."""
    from gateway.graphql_http import ResponseCache

    cache = ResponseCache(size=2048)
    key = ("{ pipeline { version } }", None, "null", "", "application/json")
    for generation in range(5000):
        stamp = ((("pipeline", generation),), 0)
        assert cache.get(key, stamp) is None
        cache.put(key, stamp, b"body %d" % generation)
        assert cache.get(key, stamp) == b"body %d" % generation
    assert len(cache.entries) == 1
    assert cache.get(key, ((("pipeline", 4998),), 0)) is None  # an older stamp never serves
