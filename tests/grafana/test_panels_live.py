"""Every dashboard panel against a live gateway, as Grafana's Infinity datasource runs it.

A real nats-server, the in-process materializer and the gateway on a real uvicorn
server; a seeded simulated scenario of ERP events; then for each panel query: its
time range, Infinity's macro substitution, the exact request Infinity sends, and its
backend parser's root selector and typed columns. Rows must come back with the
declared types and agree with what the scenario says the figures are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from nats.aio.client import Client as NATS

from gateway.app import create_app
from gateway.settings import Settings as GatewaySettings
from pulse_bi.contract import STREAM_NAME
from pulse_bi.natsserver import LocalNatsServer, free_port
from pulse_bi.simulator import Scenario, generate, publish
from pulse_bi.streams import ensure_stream
from tests.grafana.infinity import (
    PROVISIONING_DIR,
    Frame,
    PanelTarget,
    TimeRange,
    build_request,
    iter_targets,
    load_dashboards,
    panel_range,
    to_frame,
)
from tests.grafana.schema import resolve_column

pytestmark = pytest.mark.slow

SEED = 1
EVENTS = 5000
#: One instant for the scenario's end and every panel's "now", so ranges line up.
NOW = datetime.now(UTC).replace(microsecond=0)
CENT = Decimal("0.01")


@dataclass
class Live:
    """The running stack: the gateway's base URL and the scenario it was fed."""

    url: str
    scenario: Scenario


async def _serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn on the main thread takes SIGINT and SIGTERM, then puts back what it found:
    # here the test runner's handler of the fixture's setup, by then stale (tests/conftest.py).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    return server, task


@pytest.fixture
async def live(nats_server: LocalNatsServer, materializer: Any, nc: NATS) -> AsyncIterator[Live]:
    """Gateway on uvicorn over the materializer, with a simulated 48 h of ERP traffic."""
    js = nc.jetstream()
    await ensure_stream(js)
    scenario = generate(SEED, EVENTS, end=NOW)
    stats = await publish(nc, scenario.messages)
    assert stats.errors == 0, stats.first_error
    last = (await js.stream_info(STREAM_NAME)).state.last_seq
    await materializer.wait_for_sequence(last, timeout=60)

    port = free_port()
    settings = GatewaySettings(nats_url=nats_server.url, host="127.0.0.1", port=port)
    server, task = await _serve(create_app(settings), port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            async with asyncio.timeout(20):
                while (await client.get(url + "/health")).status_code != 200:
                    await asyncio.sleep(0.1)
        yield Live(url, scenario)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def run_panel(client: httpx.AsyncClient, base_url: str, target: PanelTarget) -> Frame:
    """What Grafana shows for one panel query: request as Infinity, parse as its backend."""
    time_range = panel_range(target.dashboard, target.panel, NOW)
    request = build_request(target, base_url, time_range)
    response = await client.request(
        request.method, request.url, headers=request.headers, content=request.body
    )
    assert response.status_code < 400, f"{target.name}: HTTP {response.status_code}"
    answer = json.loads(response.content)
    assert not answer.get("errors"), f"{target.name}: {answer['errors']}"
    return to_frame(answer, target.target)


async def all_frames(live: Live) -> dict[str, tuple[PanelTarget, Frame]]:
    """Every panel query of every dashboard, run against the live gateway, by name."""
    frames = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for target in iter_targets(load_dashboards()):
            frames[target.name] = (target, await run_panel(client, live.url, target))
    return frames


def money(value: Any) -> Decimal:
    """A Money value (JSON number) or an expected one (decimal string) to the cent."""
    return Decimal(str(value)).quantize(CENT)


def provisioned_datasource(gateway_url: str) -> dict[str, Any]:
    """The provisioned datasource as Grafana reads it with PULSE_BI_GATEWAY_URL set."""
    text = (PROVISIONING_DIR / "datasources" / "pulse-bi.yml").read_text()
    document = yaml.safe_load(text.replace("${PULSE_BI_GATEWAY_URL}", gateway_url))
    (datasource,) = document["datasources"]
    return datasource


async def test_provisioned_health_check_and_panel_urls_reach_the_gateway(live: Live) -> None:
    datasource = provisioned_datasource(live.url)
    json_data = datasource["jsonData"]
    # Infinity's custom health check: GET the URL, healthy only on 200.
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(json_data["customHealthCheckUrl"])
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    # Infinity refuses a query whose URL starts with none of the allowed hosts.
    window = TimeRange(NOW, NOW)
    for target in iter_targets(load_dashboards()):
        url = build_request(target, datasource["url"], window).url
        assert url == live.url + "/graphql", target.name
        assert any(url.startswith(host) for host in json_data["allowedHosts"]), target.name


async def test_every_panel_gets_rows_of_the_declared_types(live: Live) -> None:
    frames = await all_frames(live)
    assert len(frames) == len(list(iter_targets(load_dashboards())))
    for name, (target, frame) in frames.items():
        assert frame.rows, f"{name}: no rows"
        for column in target.target["columns"]:
            selected = resolve_column(
                target.document, target.target["root_selector"], column["selector"]
            )
            assert selected is not None
            values = frame.column(column["text"])
            if not selected.nullable:
                assert None not in values, f"{name}: null in non-null {column['text']!r}"
            if column["type"] == "timestamp":
                stamps = [v for v in values if v is not None]
                assert all(v.tzinfo is not None for v in stamps)
                assert all(v <= NOW for v in stamps), f"{name}: {column['text']} in the future"


def _frame(frames: dict[str, tuple[PanelTarget, Frame]], name: str) -> Frame:
    return frames[name][1]


def _range(frames: dict[str, tuple[PanelTarget, Frame]], name: str) -> TimeRange:
    target = frames[name][0]
    return panel_range(target.dashboard, target.panel, NOW)


async def test_sales_panels_agree_with_the_scenario_and_with_each_other(live: Live) -> None:
    frames = await all_frames(live)
    hourly = _frame(frames, "sales-revenue-001/Net revenue per hour/A")
    window = _range(frames, "sales-revenue-001/Net revenue per hour/A")
    expected = {
        datetime.fromisoformat(row["hour"]): row
        for row in live.scenario.expected()["sales_by_hour"]
        if window.start <= datetime.fromisoformat(row["hour"]) < window.end
    }
    assert [row["Hour"] for row in hourly.rows] == sorted(expected)
    for row in hourly.rows:
        assert money(row["Net revenue"]) == money(expected[row["Hour"]]["net_revenue"])
        assert money(row["Gross revenue"]) == money(expected[row["Hour"]]["gross_revenue"])
    orders = _frame(frames, "sales-revenue-001/Orders and cancellations per hour/A")
    for row in orders.rows:
        assert row["Orders"] == expected[row["Hour"]]["orders"]
        assert 0 <= row["Cancelled"] <= row["Orders"]

    # The tiles over the same range are the sums of the hourly bars.
    net = _frame(frames, "sales-revenue-001/Net revenue/A").rows[0]["Net revenue"]
    assert money(net) == sum((money(r["Net revenue"]) for r in hourly.rows), Decimal(0))
    count = _frame(frames, "sales-revenue-001/Orders/A").rows[0]["Orders"]
    assert count == sum(row["Orders"] for row in orders.rows) > 0
    aov = _frame(frames, "sales-revenue-001/Average order value/A").rows[0]
    cancelled = _frame(frames, "sales-revenue-001/Cancellations/A").rows[0]["Cancelled orders"]
    assert abs(money(aov["Average order value"]) * (count - cancelled) - money(net)) <= count * CENT

    top = _frame(frames, "sales-revenue-001/Top products by net revenue/A")
    revenues = [money(r["Net revenue"]) for r in top.rows]
    assert revenues and revenues == sorted(revenues, reverse=True)

    # Today so far and the same part of the day one period earlier (the time shift).
    for name in ("Today so far", "Same time, $compare earlier"):
        window = _range(frames, f"sales-revenue-001/{name}/A")
        hours = [
            row
            for row in live.scenario.expected()["sales_by_hour"]
            if window.start <= datetime.fromisoformat(row["hour"]) < window.end
        ]
        tile = _frame(frames, f"sales-revenue-001/{name}/A").rows[0]
        assert tile["Orders"] == sum(row["orders"] for row in hours), name
        assert money(tile["Net revenue"]) == sum(
            (money(row["net_revenue"]) for row in hours), Decimal(0)
        ), name


async def test_inventory_panels_agree_with_the_scenario(live: Live) -> None:
    frames = await all_frames(live)
    expected = live.scenario.expected()
    low = _frame(frames, "inventory-stock-001/Below reorder point/A")
    want = {(r["sku"], r["warehouse"]): r for r in expected["low_stock"]}
    assert {(r["SKU"], r["Warehouse"]) for r in low.rows} == set(want)
    for row in low.rows:
        assert row["On hand"] == want[row["SKU"], row["Warehouse"]]["on_hand"]
        assert row["Reorder point"] > 0 and row["On hand"] <= row["Reorder point"]
    levels = _frame(frames, "inventory-stock-001/Stock on hand by warehouse/A")
    assert sum(levels.column("On hand")) == sum(r["on_hand"] for r in expected["stock_levels"])
    moves = _frame(frames, "inventory-stock-001/Recent stock movements/A")
    times = moves.column("Time")
    assert len(moves.rows) == 50 and times == sorted(times, reverse=True)
    assert set(moves.column("Reason")) <= {"receipt", "shipment", "adjustment", "return"}


async def test_receivables_panels_agree_with_the_scenario_as_of_the_range_end(live: Live) -> None:
    frames = await all_frames(live)
    as_of: date = _range(frames, "cashflow-ar-001/AR aging buckets/A").end.date()
    expected = live.scenario.expected(as_of)
    aging = expected["ar_aging"]
    totals = _frame(frames, "cashflow-ar-001/Total outstanding/A").rows[0]
    assert totals["As of"] == as_of.isoformat()
    assert money(totals["Total outstanding"]) == money(aging["total"])
    assert totals["Open invoices"] == aging["open_invoices"]
    buckets = _frame(frames, "cashflow-ar-001/AR aging buckets/A").rows[0]
    for text, key in (
        ("Current", "current"),
        ("1-30 days", "days_1_30"),
        ("31-60 days", "days_31_60"),
        ("61-90 days", "days_61_90"),
        ("Over 90 days", "over_90"),
    ):
        assert money(buckets[text]) == money(aging[key]), text
    customers = _frame(frames, "cashflow-ar-001/Top customers by balance/A")
    balances = [money(r["Balance"]) for r in customers.rows]
    assert balances == [money(c["total"]) for c in aging["by_customer"][:10]]
    overdue = _frame(frames, "cashflow-ar-001/Overdue invoices/A")
    assert overdue.column("Invoice") == [r["invoice_id"] for r in expected["overdue_invoices"]]
    for row in overdue.rows:
        assert row["Days overdue"] >= 1
        assert money(row["Balance"]) == money(row["Amount"]) - money(row["Paid"]) > 0


async def test_top_n_panels_get_no_more_rows_than_they_ask_for(live: Live) -> None:
    frames = await all_frames(live)
    for name, limit in (
        ("sales-revenue-001/Top products by net revenue/A", 10),
        ("inventory-stock-001/Recent stock movements/A", 50),
        ("cashflow-ar-001/Top customers by balance/A", 10),
    ):
        assert 0 < len(_frame(frames, name).rows) <= limit, name
