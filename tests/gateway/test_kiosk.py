"""The kiosk page in a real headless Chromium against the whole running system.

nats-server, the materializer and the gateway run as real processes (uvicorn over real
sockets); events go in through JetStream and the tests read what the page shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import nats
import pytest
from playwright.async_api import Browser, Page, async_playwright
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway import kiosk
from pulse_bi.natsserver import LocalNatsServer, free_port
from pulse_bi.streams import ensure_stream

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
JWT_SECRET = "kiosk-test-secret-that-is-long-enough-for-hs256"
SCREENSHOT = os.environ.get("KIOSK_SCREENSHOT")  # e.g. docs/kiosk.png: keep a picture

# The gateway as its own uvicorn process, configured from the environment.
GATEWAY_MAIN = """
import os, uvicorn
from gateway.app import create_app
from gateway.settings import Settings
settings = Settings.from_env(os.environ)
uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
"""


# -- the running system ------------------------------------------------------------


@dataclass
class Stack:
    """nats-server, materializer and gateway as child processes on free ports."""

    nats: LocalNatsServer
    tmp: Path
    gateway_port: int = field(default_factory=free_port)
    gateway_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            args, env={**os.environ, "NATS_URL": self.nats.url, **env}, stdout=log, stderr=log
        )

    def start_materializer(self) -> None:
        """Start the materializer on a DuckDB file in the test's directory."""
        env = {
            "DATA_PATH": str(self.tmp / "data"),
            "DUCKDB_PATH": str(self.tmp / "data" / "pulse_bi.duckdb"),
            "MATERIALIZER_HTTP_PORT": str(free_port()),
            "HEARTBEAT_INTERVAL": "0.5",
        }
        self._spawn("materializer", [sys.executable, "-m", "pulse_bi", "materializer"], env)

    def start_gateway(self) -> None:
        """Start the gateway on its port and wait until it answers HTTP."""
        env = {"GATEWAY_PORT": str(self.gateway_port), "GATEWAY_HOST": "127.0.0.1"}
        self._spawn("gateway", [sys.executable, "-c", GATEWAY_MAIN], self.gateway_env | env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.check_alive("gateway")
            try:
                httpx.get(f"{self.url}/kiosk/", timeout=0.5)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("the gateway did not answer in 20 s")

    def stop(self, name: str) -> None:
        """Stop one process as an operator would (SIGTERM), killing it if it hangs."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def check_alive(self, name: str) -> None:
        """Fail with the process's log when it has exited."""
        process = self.processes[name]
        if process.poll() is not None:
            log = (self.tmp / f"{name}.log").read_text(errors="replace")
            raise AssertionError(f"{name} exited with {process.returncode}:\n{log[-3000:]}")


@pytest.fixture
def stack(nats_server: LocalNatsServer, tmp_path: Path) -> Iterator[Stack]:
    """The whole system minus the gateway, which each test starts as it needs it."""
    running = Stack(nats=nats_server, tmp=tmp_path)
    running.start_materializer()
    try:
        yield running
    finally:
        running.stop("gateway")
        running.stop("materializer")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def open_kiosk(
    browser: Browser, stack: Stack, query: str = "", width: int = 1920, height: int = 1080
) -> Page:
    """A fresh page on the kiosk URL, in UTC and en-US so figures read the same anywhere."""
    context = await browser.new_context(
        viewport={"width": width, "height": height}, timezone_id="UTC", locale="en-US"
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{stack.url}/kiosk{query}")
    page.set_default_timeout(15_000)
    page.errors = errors  # type: ignore[attr-defined]
    return page


# -- events --------------------------------------------------------------------------

SUBJECTS = {
    "order.created": "orders.created",
    "order.cancelled": "orders.cancelled",
    "invoice.issued": "invoices.issued",
    "payment.received": "payments.received",
    "stock.moved": "stock.moved",
    "product.updated": "products.updated",
    "customer.updated": "customers.updated",
}


class Publisher:
    """Publishes contract events to JetStream and remembers the last stream sequence."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sequence = 0

    async def __aenter__(self) -> Publisher:
        self.nc = await nats.connect(self.url)
        self.js = self.nc.jetstream()
        await ensure_stream(self.js)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.drain()

    async def publish(self, event_type: str, data: dict[str, Any]) -> float:
        """Publish one event now; return the wall-clock time it was sent (epoch ms)."""
        event_id = uuid.uuid4().hex
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": "/kiosk-test",
            "type": event_type,
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": data,
        }
        sent = time.time() * 1000
        ack = await self.js.publish(
            "pulse.events." + SUBJECTS[event_type],
            json.dumps(event).encode(),
            headers={"Nats-Msg-Id": event_id},
        )
        self.sequence = ack.seq
        return sent


def order(order_id: str, total: str) -> dict[str, Any]:
    """An order.created payload of one line."""
    line = {"sku": "SKU-A", "quantity": 1, "unit_price": total}
    return {
        "order_id": order_id,
        "customer_id": "C1",
        "channel": "web",
        "total_amount": total,
        "lines": [line],
    }


async def publish_world(pub: Publisher) -> None:
    """A small day of business whose aggregates the tests know by heart.

    Sales today: 3 orders (100.00, 50.50, 20.00), the last cancelled: net 150.50, AOV
    75.25. Low stock: SKU-A in WH-1 (4 <= 10) and SKU-B in WH-2 (3 <= 5). Receivables:
    INV-1 200.00 open, 35 days overdue (31-60); INV-2 200.00 not yet due: total 400.00.
    """
    today = datetime.now(UTC).date()
    await pub.publish("customer.updated", {"customer_id": "C1", "name": "Acme"})
    for sku, name, reorder in (("SKU-A", "Espresso beans", 10), ("SKU-B", "Oat milk", 5)):
        product = {"sku": sku, "name": name, "category": "cafe", "reorder_point": reorder}
        await pub.publish("product.updated", {**product, "unit_cost": "1.00"})
    for sku, warehouse, delta in (
        ("SKU-A", "WH-1", 4),
        ("SKU-A", "WH-2", 30),
        ("SKU-B", "WH-1", 50),
        ("SKU-B", "WH-2", 3),
    ):
        move = {"sku": sku, "warehouse": warehouse, "quantity_delta": delta}
        await pub.publish("stock.moved", {**move, "reason": "receipt"})
    for order_id, total in (("O-1", "100.00"), ("O-2", "50.50"), ("O-3", "20.00")):
        await pub.publish("order.created", order(order_id, total))
    await pub.publish("order.cancelled", {"order_id": "O-3", "reason": "customer"})
    for invoice_id, amount, due in (("INV-1", "300.00", -35), ("INV-2", "200.00", 10)):
        invoice = {"invoice_id": invoice_id, "customer_id": "C1", "amount": amount}
        dates = {
            "issued_on": (today - timedelta(days=40)).isoformat(),
            "due_date": (today + timedelta(days=due)).isoformat(),
        }
        await pub.publish("invoice.issued", {**invoice, **dates})
    payment = {"payment_id": "P-1", "invoice_id": "INV-1", "amount": "100.00"}
    await pub.publish("payment.received", payment)


async def wait_applied(stack: Stack, sequence: int, token: str | None = None) -> None:
    """Wait until the materializer has applied the stream up to `sequence`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"query": "{ pipeline { lastSequence } }"}
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(base_url=stack.url, headers=headers) as client:
        while time.monotonic() < deadline:
            stack.check_alive("materializer")
            reply = (await client.post("/graphql", json=body)).json()
            if (reply.get("data") or {}).get("pipeline", {}).get("lastSequence", 0) >= sequence:
                return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"stream sequence {sequence} not applied in 20 s: {reply}")


async def text(page: Page, selector: str) -> str:
    """The visible text of one element."""
    return (await page.inner_text(selector)).strip()


async def wait_text(page: Page, selector: str, expected: str) -> None:
    """Wait until an element shows `expected` (the page updates it by itself)."""
    await page.wait_for_function(
        "([sel, want]) => document.querySelector(sel)?.textContent.trim() === want",
        arg=[selector, expected],
    )


async def assert_fits(page: Page, width: int, height: int) -> None:
    """Nothing scrolls, nothing is cut off, every panel is inside the screen."""
    size = "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    assert await page.evaluate(size) == [width, height]
    clipped = await page.evaluate(
        """[...document.querySelectorAll('.panel:not([hidden]), .big, .amount')]
            .filter(e => e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1
                         || e.getBoundingClientRect().bottom > innerHeight
                         || e.getBoundingClientRect().right > innerWidth)
            .map(e => e.id || e.dataset.panel || e.className)"""
    )
    assert clipped == []


async def visible_panels(page: Page) -> list[str]:
    """Names of the panels on screen, in screen order."""
    return await page.evaluate(
        """[...document.querySelectorAll('[data-panel]')].filter(p => !p.hidden)
            .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top
                         || a.getBoundingClientRect().left - b.getBoundingClientRect().left)
            .map(p => p.dataset.panel)"""
    )


# -- routes (no browser) -------------------------------------------------------------


def kiosk_client(root_path: str = "") -> httpx.AsyncClient:
    """An HTTP client of the kiosk mounted the way the gateway mounts it."""
    app = Starlette(routes=[Mount("/kiosk", routes=kiosk.routes())])
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://kiosk.test")


async def test_page_points_assets_and_graphql_at_the_mount() -> None:
    async with kiosk_client() as client:
        page = await client.get("/kiosk/")
        assert page.status_code == 200
        assert '<base href="/kiosk/">' in page.text
        assert 'data-graphql-path="/graphql"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("kiosk.js", "gqlws.js", "chart.js", "format.js", "kiosk.css"):
            served = await client.get(f"/kiosk/static/{asset}")
            assert served.status_code == 200, asset
            assert served.headers["cache-control"] == "no-cache"


async def test_page_without_trailing_slash_redirects_keeping_the_screen_parameters() -> None:
    async with kiosk_client() as client:
        reply = await client.get("/kiosk?warehouse=WH-2&panels=stock")
        assert reply.status_code in (307, 308)
        assert reply.headers["location"].endswith("/kiosk/?warehouse=WH-2&panels=stock")


async def test_page_behind_a_proxy_prefix_uses_that_prefix() -> None:
    async with kiosk_client(root_path="/bi") as client:
        page = await client.get("/bi/kiosk/")
        assert '<base href="/bi/kiosk/">' in page.text
        assert 'data-graphql-path="/bi/graphql"' in page.text


async def test_unrendered_template_is_not_served_as_an_asset() -> None:
    async with kiosk_client() as client:
        assert (await client.get("/kiosk/static/index.html")).status_code == 404


def test_page_loads_nothing_from_a_cdn() -> None:
    sources = "".join(p.read_text() for p in kiosk.STATIC_DIR.iterdir() if p.suffix != ".svg")
    assert "http://" not in sources.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in sources.replace("https://github.com/enisdenjo", "")


# -- in the browser ------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
async def test_page_renders_the_current_values(stack: Stack, browser: Browser) -> None:
    async with Publisher(stack.nats.url) as pub:
        await publish_world(pub)
    stack.start_gateway()
    await wait_applied(stack, pub.sequence)

    page = await open_kiosk(browser, stack)
    await page.wait_for_selector("body[data-connection=live]")
    await wait_text(page, "#revenue-net", "150.50")
    assert await text(page, "#revenue-orders") == "3"
    assert await text(page, "#revenue-cancelled") == "1"
    assert await text(page, "#aov") == "75.25"
    await wait_text(page, "#stock-count", "2")
    skus = await page.eval_on_selector_all(
        "#stock-list li[data-sku]", "rows => rows.map(r => r.dataset.sku)"
    )
    assert sorted(skus) == ["SKU-A", "SKU-B"]
    await wait_text(page, "#ar-total", "400.00")
    assert await text(page, "#ar-current") == "200.00"
    assert await text(page, "#ar-days31To60") == "200.00"
    assert await text(page, "#ar-days1To30") == "0.00"
    assert await text(page, "#ar-overdue") == "200.00"
    assert await text(page, "#ar-open") == "2"
    # The chart's newest bar is this hour: three orders were created in it.
    await page.wait_for_selector("#orders-chart rect.bar.current[data-orders='3']")
    assert await page.locator("#orders-chart rect.bar").count() == 24
    await wait_text(page, "#fresh-lag", "0")
    assert await text(page, "#fresh-age") in ("just now", *(f"{s} s ago" for s in range(2, 60)))
    assert page.errors == []  # type: ignore[attr-defined]
    if SCREENSHOT:
        await page.screenshot(path=SCREENSHOT)


@pytest.mark.browser
@pytest.mark.slow
async def test_published_events_change_the_numbers_without_reload_or_polling(
    stack: Stack, browser: Browser
) -> None:
    async with Publisher(stack.nats.url) as pub:
        await publish_world(pub)
        stack.start_gateway()
        await wait_applied(stack, pub.sequence)
        page = await open_kiosk(browser, stack)
        await wait_text(page, "#revenue-net", "150.50")
        await wait_text(page, "#ar-total", "400.00")
        await wait_text(page, "#stock-count", "2")

        # From here on the page may only listen: any request would be polling or a reload.
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        await page.evaluate("window.sameDocument = true")
        await page.evaluate(
            """() => new MutationObserver(() => { window.revenueChangedAt ??= Date.now(); })
                .observe(document.getElementById('revenue-net'), {childList: true})"""
        )
        sent = await pub.publish("order.created", order("O-4", "74.50"))
        await wait_text(page, "#revenue-net", "225.00")
        latency_ms = await page.evaluate("window.revenueChangedAt") - sent
        assert await text(page, "#revenue-orders") == "4"
        assert await text(page, "#aov") == "75.00"
        await page.wait_for_selector("#orders-chart rect.bar.current[data-orders='4']")

        await pub.publish(
            "stock.moved",
            {"sku": "SKU-B", "warehouse": "WH-1", "quantity_delta": -46, "reason": "shipment"},
        )
        await wait_text(page, "#stock-count", "3")
        await pub.publish(
            "payment.received", {"payment_id": "P-2", "invoice_id": "INV-1", "amount": "50.00"}
        )
        await wait_text(page, "#ar-total", "350.00")
        assert await text(page, "#ar-days31To60") == "150.00"

        assert await page.evaluate("window.sameDocument") is True
        assert requests == []
    # The issue asks for "within a fraction of a second"; a loaded 2-core CI box gets slack.
    print(f"event published -> number changed on the page: {latency_ms:.0f} ms")
    assert latency_ms < 1000


@pytest.mark.browser
@pytest.mark.slow
async def test_gateway_restart_shows_the_stale_marker_then_recovers(
    stack: Stack, browser: Browser
) -> None:
    async with Publisher(stack.nats.url) as pub:
        await publish_world(pub)
        stack.start_gateway()
        await wait_applied(stack, pub.sequence)
        page = await open_kiosk(browser, stack)
        await page.wait_for_selector("body[data-connection=live]")
        await wait_text(page, "#revenue-net", "150.50")
        await page.evaluate("window.sameDocument = true")

        stack.stop("gateway")
        await page.wait_for_selector("body[data-connection=stale]")
        assert (await text(page, "#status-text")).startswith("Stale since")
        # What is still on screen is marked as old, not blanked.
        assert await text(page, "#revenue-net") == "150.50"
        opacity = await page.eval_on_selector(
            "[data-panel=revenue]", "p => getComputedStyle(p).opacity"
        )
        assert float(opacity) < 1

        # Business goes on while the gateway is away; the page must catch up after.
        await pub.publish("order.created", order("O-4", "74.50"))
        stack.start_gateway()
        await page.wait_for_selector("body[data-connection=live]")
        await wait_text(page, "#revenue-net", "225.00")
        assert await text(page, "#status-text") == "Live"
        assert await page.evaluate("window.sameDocument") is True


@pytest.mark.browser
@pytest.mark.slow
async def test_network_loss_shows_stale_and_reconnects_when_it_returns(
    stack: Stack, browser: Browser
) -> None:
    stack.start_gateway()
    page = await open_kiosk(browser, stack)
    await page.wait_for_selector("body[data-connection=live]")
    await page.context.set_offline(True)
    await page.wait_for_selector("body[data-connection=stale]")
    await page.context.set_offline(False)
    await page.wait_for_selector("body[data-connection=live]")


@pytest.mark.browser
@pytest.mark.slow
async def test_query_parameters_choose_the_warehouse_and_the_panels(
    stack: Stack, browser: Browser
) -> None:
    async with Publisher(stack.nats.url) as pub:
        await publish_world(pub)
    stack.start_gateway()
    await wait_applied(stack, pub.sequence)

    page = await open_kiosk(browser, stack, "?warehouse=WH-2&panels=stock,revenue&theme=light")
    await wait_text(page, "#stock-count", "1")
    assert await page.get_attribute("#stock-list li[data-sku]", "data-sku") == "SKU-B"
    await wait_text(page, "#revenue-net", "150.50")
    assert await visible_panels(page) == ["stock", "revenue"]
    assert "WH-2" in await text(page, "#scope")
    assert await page.get_attribute("html", "data-theme") == "light"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1366, 768), (1280, 720)])
@pytest.mark.parametrize("theme", ["dark", "light"])
async def test_everything_fits_the_screen_in_large_type(
    stack: Stack, browser: Browser, width: int, height: int, theme: str
) -> None:
    async with Publisher(stack.nats.url) as pub:
        await publish_world(pub)
    stack.start_gateway()
    await wait_applied(stack, pub.sequence)

    page = await open_kiosk(browser, stack, f"?theme={theme}", width, height)
    await wait_text(page, "#ar-total", "400.00")
    await wait_text(page, "#stock-count", "2")
    assert await visible_panels(page) == ["revenue", "aov", "fresh", "orders", "stock", "ar"]
    await assert_fits(page, width, height)
    big = await page.eval_on_selector(
        "#revenue-net", "e => parseFloat(getComputedStyle(e).fontSize)"
    )
    # Readable across a room: key figures at least 5 % of the screen height.
    assert big >= 0.05 * height
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(11, 15, 20)" if theme == "dark" else "rgb(238, 241, 245)")


@pytest.mark.browser
@pytest.mark.slow
async def test_token_comes_from_the_url_or_a_prompt_when_jwt_is_configured(
    stack: Stack, browser: Browser
) -> None:
    stack.gateway_env = {"GATEWAY_JWT_SECRET": JWT_SECRET}
    stack.start_gateway()
    claims = {"sub": "kiosk", "exp": datetime.now(UTC) + timedelta(hours=1)}
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")

    page = await open_kiosk(browser, stack)
    await page.wait_for_selector("body[data-connection=unauthorized]")
    await page.wait_for_selector("#auth:not([hidden])")
    await page.fill("#auth-token", "not-a-token")
    await page.click("#auth button")
    await page.wait_for_selector("#auth:not([hidden])")
    assert "refused" in await text(page, "#auth-message")
    await page.fill("#auth-token", token)
    await page.click("#auth button")
    await page.wait_for_selector("body[data-connection=live]")
    assert await page.is_hidden("#auth")

    from_url = await open_kiosk(browser, stack, f"?token={token}")
    await from_url.wait_for_selector("body[data-connection=live]")
    await wait_text(from_url, "#revenue-net", "0.00")


@pytest.mark.browser
@pytest.mark.slow
async def test_simulated_traffic_shows_the_figures_the_simulator_expects(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    expected_path = tmp_path / "expected.json"
    simulate = [sys.executable, "-m", "pulse_bi", "simulate", "--nats-url", stack.nats.url]
    options = ["--count", "20000", "--seed", "7", "--window-hours", "23", "--quiet"]
    subprocess.run([*simulate, *options, "--expected", str(expected_path)], check=True)
    expected = json.loads(expected_path.read_text())
    async with Publisher(stack.nats.url) as pub:
        info = await pub.js.stream_info("PULSE_EVENTS")
    stack.start_gateway()
    await wait_applied(stack, info.state.last_seq)

    page = await open_kiosk(browser, stack, "?currency=EUR")
    await page.wait_for_selector("body[data-connection=live]")
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = [h for h in expected["sales_by_hour"] if datetime.fromisoformat(h["hour"]) >= midnight]
    net_today = sum(float(h["net_revenue"]) for h in today)
    await page.wait_for_function(
        "want => Math.abs(document.getElementById('revenue-net').dataset.value - want) < 0.005",
        arg=net_today,
    )
    orders_today = sum(h["orders"] for h in today)
    assert await page.get_attribute("#revenue-orders", "data-value") == str(orders_today)
    bars = await page.eval_on_selector_all(
        "#orders-chart rect.bar",
        "bars => bars.map(b => [b.dataset.hour, Number(b.dataset.orders)])",
    )
    by_hour = {datetime.fromisoformat(h["hour"]): h["orders"] for h in expected["sales_by_hour"]}
    assert [n for _, n in bars] == [by_hour.get(datetime.fromisoformat(t), 0) for t, _ in bars]
    assert sum(n for _, n in bars) == sum(by_hour.values())  # the whole run is in the window
    low = len(expected["low_stock"])
    assert await page.get_attribute("#stock-count", "data-value") == str(low)
    ar_total = float(expected["ar_aging"]["total"])
    assert abs(float(await page.get_attribute("#ar-total", "data-value") or 0) - ar_total) < 0.005
    await assert_fits(page, 1920, 1080)
    more = await text(page, "#stock-list li.more")
    shown = await page.locator("#stock-list li[data-sku]").count()
    assert more == f"+ {low - shown} more"
    await page.wait_for_timeout(1300)  # let the change highlight fade before the picture
    await page.screenshot(path=SCREENSHOT or str(tmp_path / "kiosk.png"))
