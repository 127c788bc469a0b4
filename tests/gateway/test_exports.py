"""Exports against a contract-shaped query service: parameters, columns, formats, streaming.

The end-to-end agreement with the simulator's expected aggregates is in
tests/gateway/test_exports_e2e.py.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import time
import tracemalloc
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import httpx
import openpyxl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from nats.micro.request import Request

from gateway.errors import BadRequest
from gateway.exports.params import parse_export_params
from gateway.exports.table import humanize, table
from gateway.exports.writers import CsvWriter, ParquetWriter, XlsxWriter
from gateway.settings import Settings
from pulse_bi.contract import BY_NAME, QUERIES, query_subject
from tests.gateway.conftest import Canned, Server

FORMATS = ("csv", "xlsx", "parquet")
SECRET = "export-test-secret-of-at-least-32-bytes"


def read_back(fmt: str, body: bytes) -> list[list[Any]]:
    """Header and rows of an export, cells as the file holds them."""
    if fmt == "csv":
        return [list(row) for row in csv.reader(io.StringIO(body.decode("utf-8"), newline=""))]
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(body))
        headers = [t.schema.metadata[f"header:{n}".encode()].decode() for n in t.column_names]
        return [headers, *[list(r.values()) for r in t.to_pylist()]]
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    rows: list[list[Any]] = []
    for sheet in book.worksheets:
        sheet_rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        rows.extend(sheet_rows if not rows else sheet_rows[1:])
    return rows


# -- parameters -------------------------------------------------------------------------

SALES = BY_NAME["sales_by_hour"]


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ([("nope", "1")], "unknown parameter 'nope'"),
        ([("channel", "a"), ("channel", "b")], "more than once"),
        ([("from", "yesterday")], "'from'"),
        ([("from", "2026-11-25T00:00:00")], "timezone"),
        ([("from", "")], "is empty"),
        ([("channel", "x" * 300)], "300 characters"),
        ([("limit", "0")], "between 1 and"),
        ([("limit", "١٢")], "must be an integer"),
        ([("limit", "99999999999999999999999")], "must be an integer"),
        ([("offset", "-1")], "between 0 and"),
        ([("limit", "1e3")], "must be an integer"),
        ([("from", "9999-12-31T23:00:00+00:00"), ("to", "0001-01-01T00:00:00+00:00")], "before"),
        ([("from", "0001-01-01T00:00:00+01:00")], "out of range"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(items: Any, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        parse_export_params(SALES, items, 1_000_000)


def test_parameters_by_wire_name_with_window_defaults() -> None:
    params = parse_export_params(
        SALES, [("from", "2026-11-25T00:00:00Z"), ("channel", "wéb 🛒")], 100
    )
    assert params.values["from_"] == dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    assert params.values["to"] > params.values["from_"]
    assert params.values["channel"] == "wéb 🛒"
    aging = parse_export_params(BY_NAME["ar_aging"], [("as_of", "9999-12-31")], 100)
    assert aging.values["as_of"] == dt.date(9999, 12, 31)
    overdue = BY_NAME["overdue_invoices"]
    with pytest.raises(BadRequest, match="between -100000 and 100000"):
        parse_export_params(overdue, [("min_days_overdue", "100001")], 100)
    assert parse_export_params(overdue, [("limit", "100")], 100).limit == 100
    with pytest.raises(BadRequest, match="between 1 and 100"):
        parse_export_params(overdue, [("limit", "101")], 100)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(QUERIES),
    st.lists(
        st.tuples(
            st.sampled_from(["from", "to", "channel", "as_of", "limit", "offset", "sku", "x"]),
            st.text(max_size=40),
        ),
        max_size=4,
    ),
)
def test_any_url_parameters_parse_or_give_a_reason(spec: Any, items: Any) -> None:
    try:
        params = parse_export_params(spec, items, 10_000)
    except BadRequest as exc:
        assert exc.message.startswith(spec.name)
        return
    params.struct()  # what is accepted builds the query's params struct


# -- columns and writers ----------------------------------------------------------------


def test_every_query_has_a_table_with_readable_headers() -> None:
    for spec in QUERIES:
        columns = table(spec).columns
        assert columns, spec.name
        assert len({c.name for c in columns}) == len(columns)
        for column in columns:
            assert "_" not in column.header and column.header[0].isupper()
    assert humanize("average_order_value") == "Average order value"
    assert humanize("days_61_90") == "Days 61-90"
    aging = [c.name for c in table(BY_NAME["ar_aging"]).columns]
    assert "by_customer.customer_id" in aging and "by_customer.total" in aging


def test_money_and_extremes_survive_every_format() -> None:
    spec = BY_NAME["overdue_invoices"]
    t = table(spec)
    big = Decimal("99999999999999999999999999999999999.99")
    rows = [
        (
            "INV-=1+1",
            "C-ü",
            '@Acme\x01\t"quoted"',
            None,
            Decimal("0.10"),
            Decimal("-0.01"),
            big,
            dt.date(1, 1, 1),
            dt.date(9999, 12, 31),
            -100_000,
            "over-90",
        )
    ]
    assert len(rows[0]) == len(t.columns)
    for cls, fmt in ((CsvWriter, "csv"), (ParquetWriter, "parquet"), (XlsxWriter, "xlsx")):
        w = cls(t.columns)
        try:
            body = w.start() + w.write(rows) + b"".join(w.finish())
        finally:
            w.close()
        header, row = read_back(fmt, body)
        assert header[0] == "Invoice ID"
        if fmt == "csv":
            assert row[:3] == ["INV-=1+1", "C-ü", '@Acme\x01\t"quoted"']
            assert row[4:7] == ["0.10", "-0.01", str(big)]
            assert row[7:9] == ["0001-01-01", "9999-12-31"]
        elif fmt == "parquet":
            assert row[4:7] == [Decimal("0.10"), Decimal("-0.01"), big]
            assert row[7:9] == [dt.date(1, 1, 1), dt.date(9999, 12, 31)]
        else:
            assert row[0] == "INV-=1+1"  # a string cell, never a formula
            assert row[4:6] == [0.1, -0.01]
            assert row[6] == str(big)  # too large for a double: exact text
            assert row[9] == -100_000


def test_xlsx_continues_on_a_new_sheet_past_the_row_limit() -> None:
    t = table(BY_NAME["stock_movements"])
    w = XlsxWriter(t.columns, sheet_rows=3)
    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    rows = [(i, now, "S", "W", i, "r") for i in range(7)]
    try:
        body = w.write(rows[:4]) + w.write(rows[4:]) + b"".join(w.finish())
    finally:
        w.close()
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    assert book.sheetnames == ["Sheet1", "Sheet2", "Sheet3"]
    assert [r[0] for r in read_back("xlsx", body)[1:]] == list(range(7))


# -- over HTTP --------------------------------------------------------------------------


async def test_every_query_in_every_format_over_http(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    canned.data["sales_by_channel"] = [{"channel": "web", **canned.data["sales_by_hour"][0]}]
    del canned.data["sales_by_channel"][0]["hour"]
    for spec in QUERIES:
        for fmt in FORMATS:
            response = await client.get(f"/export/{spec.name}.{fmt}")
            assert response.status_code == 200, (spec.name, fmt, response.text)
            disposition = response.headers["content-disposition"]
            assert disposition.startswith(f'attachment; filename="{spec.name}_')
            assert disposition.endswith(f'.{fmt}"')
            header, *rows = read_back(fmt, response.content)
            assert header == [c.header for c in table(spec).columns]
            assert len(rows) == (0 if spec.name == "rejected_events" else 1)


async def test_money_is_exact_and_times_utc_in_each_format(client: httpx.AsyncClient) -> None:
    url = "/export/sales_by_hour.{}?from=2026-11-25T00:00:00%2B05:00&to=2026-11-26T00:00:00Z"
    csv_rows = read_back("csv", (await client.get(url.format("csv"))).content)
    assert csv_rows[1] == ["2026-11-25T10:00:00+00:00", "3", "1", "300.10", "100.00", "200.10",
                           "7", "100.05"]  # fmt: skip
    pq_rows = read_back("parquet", (await client.get(url.format("parquet"))).content)
    assert pq_rows[1][3:6] == [Decimal("300.10"), Decimal("100.00"), Decimal("200.10")]
    assert pq_rows[1][0] == dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)
    body = (await client.get(url.format("xlsx"))).content
    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    assert sheet is not None
    assert sheet["D2"].value == 300.1 and sheet["D2"].number_format == "0.00"
    assert sheet["A2"].value == "2026-11-25T10:00:00+00:00"
    response = await client.get(url.format("csv"))
    assert (
        "sales_by_hour_20261124T1900Z-20261126T0000Z.csv" in response.headers["content-disposition"]
    )


async def test_bad_requests_are_400_with_a_reason(client: httpx.AsyncClient) -> None:
    cases = {
        "/export/sales_by_hour.pdf": "format one of csv, xlsx, parquet",
        "/export/sales_by_hour": "format one of",
        "/export/nope.csv": "unknown query 'nope'",
        "/export/stock_levels.csv?warehouse=": "is empty",
        "/export/stock_levels.csv?colour=red": "unknown parameter 'colour'",
        "/export/ar_aging.csv?as_of=2026-13-01": "as_of",
        "/export/sales_by_hour.csv?from=2000-01-01T00:00:00%2B00:00": "from is too old",
    }
    for url, reason in cases.items():
        response = await client.get(url)
        assert response.status_code == 400, url
        assert reason in response.json()["errors"][0]["message"], url


async def test_index_lists_every_query_with_its_urls(client: httpx.AsyncClient) -> None:
    body = (await client.get("/export")).json()
    assert [q["query"] for q in body["queries"]] == [s.name for s in QUERIES]
    sales = body["queries"][0]
    assert sales["urls"]["xlsx"] == "/export/sales_by_hour.xlsx"
    assert {p["name"] for p in sales["parameters"]} >= {"from", "to", "channel"}


async def test_exports_need_a_token_when_auth_is_on(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    import jwt

    server = server_factory(settings.replace(jwt_secret=SECRET))
    async with httpx.AsyncClient(base_url=server.url) as http:
        refused = await http.get("/export/stock_levels.csv")
        assert refused.status_code == 401
        claims = {"sub": "u", "exp": int(time.time()) + 60}
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        ok = await http.get(
            "/export/stock_levels.csv", headers={"authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 200
        assert ok.text.startswith("SKU,Warehouse")


# -- streaming --------------------------------------------------------------------------


class Synthetic:
    """Answers stock_movements with ``total`` generated rows, one page at a time."""

    def __init__(self, canned: Canned, total: int) -> None:
        self.canned, self.total, self.pages = canned, total, 0

    async def start(self) -> None:
        assert self.canned.service is not None
        await self.canned.service.stop()
        self.canned.service = None
        self.sub = await self.canned.nc.subscribe(
            query_subject("stock_movements"), queue="q", cb=self.handle
        )

    async def handle(self, msg: Any) -> None:
        params = json.loads(msg.data)
        offset, limit = params.get("offset", 0), params["limit"]
        self.pages += 1
        rows = [
            {
                "sequence": i,
                "time": "2026-11-25T10:04:05+00:00",
                "sku": f"SKU-{i % 977}",
                "warehouse": "WH-1",
                "quantity_delta": -(i % 13),
                "reason": "shipment",
            }
            for i in range(offset, min(offset + limit, self.total))
        ]
        await msg.respond(json.dumps({"version": 1, "data": rows}).encode())


@dataclass
class Movements:
    """stock_movements answered by a synthetic service, and gateways started over it."""

    synthetic: Synthetic
    settings: Settings
    server_factory: Any

    def gateway(self, total: int, **changes: Any) -> Server:
        """A gateway (settings changed by ``changes``) over ``total`` synthetic movements."""
        self.synthetic.total = total
        return cast(Server, self.server_factory(self.settings.replace(**changes)))


@pytest.fixture
async def movements(settings: Settings, canned: Canned, server_factory: Any) -> Movements:
    synthetic = Synthetic(canned, 0)
    await synthetic.start()
    return Movements(synthetic, settings, server_factory)


async def _download(url: str, pause_after_first: float = 0.0) -> tuple[int, int]:
    """(bytes, body lines) of a streamed export, read chunk by chunk."""
    size = lines = 0
    async with httpx.AsyncClient(timeout=60) as http, http.stream("GET", url) as response:
        assert response.status_code == 200
        first = True
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
            if first and pause_after_first:
                first = False
                await asyncio.sleep(pause_after_first)
    return size, lines


@pytest.mark.slow
async def test_a_large_export_is_streamed_with_bounded_memory(movements: Movements) -> None:
    _ = Request  # the synthetic service answers on a plain subscription
    server = movements.gateway(0, query_timeout=20.0, query_retries=0)
    synthetic = movements.synthetic
    url = f"{server.url}/export/stock_movements.csv"
    peaks = {}
    for total in (5_000, 50_000):
        synthetic.total, synthetic.pages = total, 0
        tracemalloc.start()
        try:
            _, lines = await _download(url)
            peaks[total] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert lines == total + 1
        assert synthetic.pages == total // 5000 + 1  # the last, short page ends it
    # Ten times the rows, not ten times the memory: one page at a time.
    assert peaks[50_000] < 2 * peaks[5_000], peaks


@pytest.mark.slow
async def test_a_slow_reader_holds_back_the_pages(movements: Movements) -> None:
    server = movements.gateway(200_000)
    synthetic = movements.synthetic
    url = f"{server.url}/export/stock_movements.csv"
    async with httpx.AsyncClient(timeout=60) as http, http.stream("GET", url) as response:
        iterator = response.aiter_bytes()
        await anext(iterator)
        await asyncio.sleep(1.0)
        # The client has not read: the gateway waits instead of pulling all 41 pages in.
        assert synthetic.pages < 20, synthetic.pages
        async for _ in iterator:
            pass
    assert synthetic.pages == 41


async def test_too_many_concurrent_exports_get_429(movements: Movements) -> None:
    server = movements.gateway(200_000, export_concurrency=1)
    url = f"{server.url}/export/stock_movements.csv"
    async with httpx.AsyncClient(timeout=60) as http, http.stream("GET", url) as first:
        await anext(first.aiter_bytes())
        second = await http.get(url)
        assert second.status_code == 429
        assert "GATEWAY_EXPORT_CONCURRENCY" in second.json()["error"]["message"]
    async with httpx.AsyncClient(timeout=60) as http:
        # The first one's slot is given back when it ends (here: the client left).
        async def free() -> bool:
            # (pipeline is not answered by the synthetic service: 503, but not 429)
            return (await http.get(f"{server.url}/export/pipeline.csv")).status_code == 503

        from tests.gateway.conftest import until

        await until(free, timeout=10)


async def test_an_export_over_the_row_cap_fails_instead_of_truncating(
    movements: Movements,
) -> None:
    server = movements.gateway(12_000, export_max_rows=4_000)
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.get(f"{server.url}/export/stock_movements.csv")
        assert response.status_code == 400
        assert "more than 4000 rows" in response.text
        server2 = movements.gateway(12_000, export_max_rows=7_000, port=_port())
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"{server2.url}/export/stock_movements.csv")
        capped = await http.get(f"{server2.url}/export/stock_movements.csv?limit=6500")
        assert capped.status_code == 200
        assert capped.text.count("\n") == 6501


def _port() -> int:
    from pulse_bi.natsserver import free_port

    return free_port()
