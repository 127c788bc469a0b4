"""The ``site`` argument (docs/API.md): every site-splittable field passes it on, absent
means every site, and bad values are refused before the materializer is asked."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import Canned
from tests.gateway.test_arguments import error_of, gql

#: Each field that takes `site`, the named query it asks, and a selection.
FIELDS = [
    ("salesByHour", "sales_by_hour", "hour"),
    ("salesSummary", "sales_summary", "orders"),
    ("salesByChannel", "sales_by_channel", "channel"),
    ("topProducts", "top_products", "sku"),
    ("stockLevels", "stock_levels", "sku"),
    ("lowStock", "low_stock", "sku"),
    ("stockMovements", "stock_movements", "sku"),
    ("arAging", "ar_aging", "asOf"),
    ("overdueInvoices", "overdue_invoices", "invoiceId"),
]


@pytest.mark.parametrize(("field", "name", "selection"), FIELDS)
async def test_the_site_argument_reaches_the_named_query(
    client: httpx.AsyncClient, canned: Canned, field: str, name: str, selection: str
) -> None:
    query = f"query($s: String) {{ {field}(site: $s) {{ {selection} }} }}"
    response = await gql(client, query, s="wh-1")
    assert "errors" not in response.json(), response.json()
    asked = [params for query_name, params in canned.requests if query_name == name]
    assert asked[-1]["site"] == "wh-1"
    # The central site is the empty string: a filter, not "all sites".
    await gql(client, query, s="")
    asked = [params for query_name, params in canned.requests if query_name == name]
    assert asked[-1]["site"] == ""
    # Without it the request is exactly what it was before sites: every site summed.
    await gql(client, f"{{ {field} {{ {selection} }} }}")
    asked = [params for query_name, params in canned.requests if query_name == name]
    assert "site" not in asked[-1]


@pytest.mark.parametrize("site", ["w" * 10_240, "w" * 257])
async def test_a_huge_site_is_bad_user_input_and_never_asked(
    client: httpx.AsyncClient, canned: Canned, site: str
) -> None:
    before = len(canned.requests)
    response = await gql(client, "query($s: String) { salesByHour(site: $s) { hour } }", s=site)
    error = error_of(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"'site' is {len(site)} characters long" in error["message"]
    assert len(canned.requests) == before


async def test_site_is_a_string_argument(client: httpx.AsyncClient) -> None:
    response = await gql(client, "query($s: String) { stockLevels(site: $s) { sku } }", s=17)
    assert response.status_code == 400
    assert error_of(response)["extensions"]["code"] == "BAD_USER_INPUT"
    response = await gql(client, '{ pipeline(site: "wh1") { version } }')
    assert "Unknown argument 'site'" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/query/sales/hourly", "sales_by_hour"),
        ("/query/inventory/low-stock", "low_stock"),
        ("/query/ar/overdue", "overdue_invoices"),
    ],
)
async def test_rest_passes_the_site_on(
    client: httpx.AsyncClient, canned: Canned, path: str, name: str
) -> None:
    response = await client.get(path, params={"site": "wh1"})
    assert response.status_code == 200, response.text
    assert response.json()["params"]["site"] == "wh1"
    assert canned.requests[-1] == (name, canned.requests[-1][1])
    assert canned.requests[-1][1]["site"] == "wh1"
    await client.get(path)
    assert "site" not in canned.requests[-1][1] or canned.requests[-1][1]["site"] is None
    huge = await client.get(path, params={"site": "w" * 10_240})
    assert huge.status_code == 400
    assert "'site' is 10240 characters long" in huge.json()["errors"][0]["message"]


@pytest.mark.parametrize(("field", "name", "selection"), FIELDS)
async def test_exports_take_the_site_from_the_declaration(
    client: httpx.AsyncClient, canned: Canned, field: str, name: str, selection: str
) -> None:
    response = await client.get(f"/export/{name}.csv", params={"site": "wh1"})
    assert response.status_code == 200, response.text
    asked = [params for query_name, params in canned.requests if query_name == name]
    assert asked[-1]["site"] == "wh1"
    # An empty URL parameter is refused as everywhere in exports (docs/EXPORTS.md).
    empty = await client.get(f"/export/{name}.csv", params={"site": ""})
    assert empty.status_code == 400
    assert "parameter 'site' is empty" in empty.text
    (entry,) = [q for q in (await client.get("/export")).json()["queries"] if q["query"] == name]
    assert {"name": "site", "type": "string", "required": False} in entry["parameters"]
