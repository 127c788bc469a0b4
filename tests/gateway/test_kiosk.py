"""The kiosk page in a real headless Chromium against the whole running system.

nats-server, the materializer and the gateway run as real processes (the gateway on
uvicorn, over real sockets); events go in through JetStream and the tests read what the
page shows. The first few tests check the routes in-process, without a browser.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
import jwt
import pytest
from playwright.async_api import Browser, Page
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway import kiosk
from gateway.exports.table import table
from gateway.exports.writers import MEDIA_TYPES
from pulse_bi.contract import BY_NAME
from tests.clock import clear_of_the_hour
from tests.gateway.kiosk_stack import (
    Publisher,
    Stack,
    assert_fits,
    open_kiosk,
    open_live,
    order,
    page_problems,
    start_with_world,
    text,
    visible_panels,
    wait_applied,
    wait_text,
)
from tests.gateway.test_exports import read_back

JWT_SECRET = "kiosk-test-secret-that-is-long-enough-for-hs256"
SCREENSHOT = os.environ.get("KIOSK_SCREENSHOT")  # e.g. docs/kiosk.png: keep a picture


@pytest.fixture
async def world_kiosk(stack: Stack, browser: Browser) -> AsyncIterator[tuple[Publisher, Page]]:
    """The kiosk showing the known day of business, and a publisher still open for more."""
    async with Publisher(stack.nats.url) as pub:
        await start_with_world(stack, pub)
        page = await open_kiosk(browser, stack)
        await wait_text(page, "#revenue-net", "150.50")
        yield pub, page


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
        for asset in ("kiosk.js", "config.js", "gqlws.js", "chart.js", "format.js", "kiosk.css"):
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
        assert 'data-export-path="/bi/export"' in page.text


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
    await start_with_world(stack)

    page = await open_live(browser, stack)
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
    ticks = await page.eval_on_selector_all(
        "#orders-chart text.axis[text-anchor=end]", "ticks => ticks.map(t => t.textContent)"
    )
    assert ticks == ["0", "5"]  # a rounded scale above the 3 orders, in whole orders
    await wait_text(page, "#fresh-lag", "0")
    assert await text(page, "#fresh-age") in ("just now", *(f"{s} s ago" for s in range(2, 60)))
    assert await page_problems(page) == []
    if SCREENSHOT:
        await page.screenshot(path=SCREENSHOT)


#: The named query behind each panel (docs/KIOSK.md, "Downloads").
PANEL_QUERIES = {
    "revenue": "sales_summary",
    "aov": "sales_summary",
    "fresh": "pipeline",
    "orders": "sales_by_hour",
    "stock": "low_stock",
    "ar": "ar_aging",
}


@pytest.mark.browser
@pytest.mark.slow
async def test_every_panel_links_to_the_export_of_its_query_with_its_parameters(
    stack: Stack, browser: Browser
) -> None:
    await start_with_world(stack)
    page = await open_live(browser, stack, "?channel=web")
    await wait_text(page, "#stock-count", "2")
    links = await page.eval_on_selector_all(
        "[data-panel]:not([hidden]) .exports a",
        "links => links.map(a => [a.closest('[data-panel]').dataset.panel, a.dataset.format,"
        " a.href, a.textContent])",
    )
    by_panel: dict[str, dict[str, str]] = {}
    for panel, fmt, href, label in links:
        assert label == fmt.upper()
        by_panel.setdefault(panel, {})[fmt] = href
    assert sorted(by_panel) == sorted(PANEL_QUERIES)
    async with httpx.AsyncClient(timeout=30) as client:
        for panel, query in PANEL_QUERIES.items():
            assert sorted(by_panel[panel]) == ["csv", "xlsx"], panel
            for fmt, href in by_panel[panel].items():
                assert href.startswith(f"{stack.url}/export/{query}.{fmt}"), href
                reply = await client.get(href)
                assert reply.status_code == 200, (href, reply.text)
                assert reply.headers["content-type"].startswith(MEDIA_TYPES[fmt]), href
                assert reply.content, href
                header, *_rows = read_back(fmt, reply.content)
                assert header == [c.header for c in table(BY_NAME[query]).columns], href
    # The links carry the panels' own parameters: the channel, today's window, as_of.
    summary = httpx.URL(by_panel["revenue"]["csv"]).params
    assert summary["channel"] == "web"
    assert summary["from"] < summary["to"]
    assert httpx.URL(by_panel["orders"]["csv"]).params["channel"] == "web"
    assert "as_of" in httpx.URL(by_panel["ar"]["csv"]).params
    assert await page_problems(page) == []


@pytest.mark.browser
@pytest.mark.slow
async def test_export_links_follow_the_screen_warehouse_and_give_its_rows(
    stack: Stack, browser: Browser
) -> None:
    await start_with_world(stack)
    page = await open_live(browser, stack, "?warehouse=WH-2&panels=stock,revenue")
    await wait_text(page, "#revenue-net", "150.50")
    stock = await page.get_attribute("[data-panel=stock] .exports a[data-format=csv]", "href")
    revenue = await page.get_attribute("[data-panel=revenue] .exports a[data-format=csv]", "href")
    assert stock is not None and revenue is not None
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        # Same origin, from the gateway's root: the page's attribute is an absolute path.
        assert stock.startswith("/export/low_stock.csv?")
        stock_rows = read_back("csv", (await client.get(stock)).content)
        revenue_rows = read_back("csv", (await client.get(revenue)).content)
    assert httpx.URL(stock).params["warehouse"] == "WH-2"
    sku, warehouse = stock_rows[0].index("SKU"), stock_rows[0].index("Warehouse")
    assert [(row[sku], row[warehouse]) for row in stock_rows[1:]] == [("SKU-B", "WH-2")]
    net = revenue_rows[0].index("Net revenue")
    assert [row[net] for row in revenue_rows[1:]] == ["150.50"]


@pytest.mark.browser
@pytest.mark.slow
async def test_published_events_change_the_numbers_without_reload_or_polling(
    world_kiosk: tuple[Publisher, Page],
) -> None:
    pub, page = world_kiosk
    await wait_text(page, "#ar-total", "400.00")
    await wait_text(page, "#stock-count", "2")

    # From here on the page may only listen: any request would be polling or a reload.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.evaluate("window.sameDocument = true")
    await pub.publish("order.created", order("O-4", "74.50"))
    await wait_text(page, "#revenue-net", "225.00")
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


@pytest.mark.browser
@pytest.mark.slow
async def test_gateway_restart_shows_the_stale_marker_then_recovers(
    stack: Stack, world_kiosk: tuple[Publisher, Page]
) -> None:
    pub, page = world_kiosk
    await page.wait_for_selector("body[data-connection=live]")
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
    page = await open_live(browser, stack)
    await page.context.set_offline(True)
    await page.wait_for_selector("body[data-connection=stale]")
    await page.context.set_offline(False)
    await page.wait_for_selector("body[data-connection=live]")


@pytest.mark.browser
@pytest.mark.slow
async def test_query_parameters_choose_the_warehouse_and_the_panels(
    stack: Stack, browser: Browser
) -> None:
    await start_with_world(stack)

    page = await open_kiosk(browser, stack, "?warehouse=WH-2&panels=stock,revenue&theme=light")
    await wait_text(page, "#stock-count", "1")
    assert await page.get_attribute("#stock-list li[data-sku]", "data-sku") == "SKU-B"
    await wait_text(page, "#revenue-net", "150.50")
    assert await visible_panels(page) == ["stock", "revenue"]
    assert "WH-2" in await text(page, "#scope")
    assert await page.get_attribute("html", "data-theme") == "light"

    # Mistyped parameters fall back to the defaults instead of blanking the screen.
    typo = await open_kiosk(browser, stack, "?panels=bogus&locale=x_1&currency=NOPE&theme=pink")
    await wait_text(typo, "#revenue-net", "150.50")
    assert len(await visible_panels(typo)) == 6
    assert await typo.get_attribute("html", "data-theme") == "dark"
    assert await page_problems(typo) == []

    # theme=auto follows the screen's colour scheme; without `theme` the kiosk is dark.
    schemes: list[tuple[Literal["dark", "light"], str, str]] = [
        ("dark", "?theme=auto", "dark"),
        ("light", "?theme=auto", "light"),
        ("light", "", "dark"),
    ]
    for scheme, query, expected in schemes:
        other = await open_kiosk(browser, stack, query, color_scheme=scheme)
        assert await other.get_attribute("html", "data-theme") == expected, (scheme, query)


SCREENS = [(1920, 1080), (1366, 768), (1280, 720)]
BACKGROUNDS = {"dark": "rgb(11, 15, 20)", "light": "rgb(238, 241, 245)"}


@pytest.mark.browser
@pytest.mark.slow
async def test_everything_fits_the_screen_in_large_type(stack: Stack, browser: Browser) -> None:
    await start_with_world(stack)
    # One running system serves every screen size and theme: only the page differs.
    for (width, height), theme in itertools.product(SCREENS, BACKGROUNDS):
        page = await open_kiosk(browser, stack, f"?theme={theme}", width, height)
        await wait_text(page, "#ar-total", "400.00")
        await wait_text(page, "#stock-count", "2")
        assert await visible_panels(page) == ["revenue", "aov", "fresh", "orders", "stock", "ar"]
        await assert_fits(page, width, height)
        assert await page_problems(page) == []
        big = await page.eval_on_selector(
            "#revenue-net", "e => parseFloat(getComputedStyle(e).fontSize)"
        )
        # Readable across a room: key figures at least 5 % of the screen height.
        assert big >= 0.05 * height, (width, height, theme)
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == BACKGROUNDS[theme]
        await page.context.close()


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

    from_url = await open_live(browser, stack, f"?token={token}")
    await wait_text(from_url, "#revenue-net", "0.00")

    # A link cannot carry the token: the page fetches the export with it and saves it.
    href = await from_url.get_attribute("[data-panel=stock] a[data-format=csv]", "href")
    assert href is not None
    async with httpx.AsyncClient(base_url=stack.url) as client:
        assert (await client.get(href)).status_code == 401
    async with from_url.expect_download() as info:
        await from_url.click("[data-panel=stock] a[data-format=csv]")
    download = await info.value
    assert download.suggested_filename.startswith("low_stock_")
    saved = await download.path()
    assert saved is not None
    header = read_back("csv", Path(saved).read_bytes())[0]
    assert header == [c.header for c in table(BY_NAME["low_stock"]).columns]
    assert await page_problems(from_url) == []


@pytest.mark.browser
@pytest.mark.slow
async def test_simulated_traffic_shows_the_figures_the_simulator_expects(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    expected_path = tmp_path / "expected.json"
    simulate = [sys.executable, "-m", "pulse_bi", "simulate", "--nats-url", stack.nats.url]
    options = ["--count", "20000", "--seed", "7", "--window-hours", "23", "--quiet"]
    # The simulator's window ends at its "now" and the page's 24 bars move with the
    # clock: an hour turning in between would drop the oldest bar's orders.
    await clear_of_the_hour()
    subprocess.run([*simulate, *options, "--expected", str(expected_path)], check=True)
    expected = json.loads(expected_path.read_text())
    async with Publisher(stack.nats.url) as pub:
        info = await pub.js.stream_info("PULSE_EVENTS")
    stack.start_gateway()
    await wait_applied(stack, info.state.last_seq)

    page = await open_live(browser, stack, "?currency=EUR")
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = [h for h in expected["sales_by_hour"] if datetime.fromisoformat(h["hour"]) >= midnight]
    net_today = sum(float(h["net_revenue"]) for h in today)
    await page.wait_for_function(
        "want => Math.abs(document.getElementById('revenue-net').dataset.value - want) < 0.005",
        arg=net_today,
    )
    # Each panel has its own subscription: wait for every one, not just the first.
    orders_today = sum(h["orders"] for h in today)
    low = len(expected["low_stock"])
    ar_total = float(expected["ar_aging"]["total"])
    by_hour = {datetime.fromisoformat(h["hour"]): h["orders"] for h in expected["sales_by_hour"]}
    await page.wait_for_selector(f'#revenue-orders[data-value="{orders_today}"]')
    await page.wait_for_selector(f'#stock-count[data-value="{low}"]')
    await page.wait_for_function(
        "want => Math.abs(document.getElementById('ar-total').dataset.value - want) < 0.005",
        arg=ar_total,
    )
    await page.wait_for_function(
        "want => [...document.querySelectorAll('#orders-chart rect.bar')]"
        ".reduce((n, b) => n + Number(b.dataset.orders), 0) === want",
        arg=sum(by_hour.values()),
    )
    bars = await page.eval_on_selector_all(
        "#orders-chart rect.bar",
        "bars => bars.map(b => [b.dataset.hour, Number(b.dataset.orders)])",
    )
    assert [n for _, n in bars] == [by_hour.get(datetime.fromisoformat(t), 0) for t, _ in bars]
    assert sum(n for _, n in bars) == sum(by_hour.values())  # the whole run is in the window
    assert await page.get_attribute("#stock-count", "data-value") == str(low)
    assert abs(float(await page.get_attribute("#ar-total", "data-value") or 0) - ar_total) < 0.005
    await assert_fits(page, 1920, 1080)
    more = await text(page, "#stock-list li.more")
    shown = await page.locator("#stock-list li[data-sku]").count()
    assert more == f"+ {low - shown} more"
    # The picture shows the figures after their change highlight has faded.
    await page.wait_for_function("document.getAnimations().every(a => a.animationName !== 'flash')")
    await page.screenshot(path=SCREENSHOT or str(tmp_path / "kiosk.png"))


@pytest.mark.browser
@pytest.mark.slow
async def test_chart_window_moves_on_by_itself_when_the_hour_turns(
    stack: Stack, browser: Browser
) -> None:
    await start_with_world(stack)

    page = await open_kiosk(browser, stack, "?panels=orders")
    await page.wait_for_selector("#orders-chart rect.bar.current[data-orders='3']")
    # An hour later, with no new data, this hour's orders move one bar to the left.
    later = datetime.now(UTC) + timedelta(hours=1)
    await page.clock.set_system_time(later)
    await page.wait_for_selector("#orders-chart rect.current[data-orders='0']", state="attached")
    bars = await page.eval_on_selector_all(
        "#orders-chart rect.bar", "bars => bars.map(b => Number(b.dataset.orders))"
    )
    assert bars[-2:] == [3, 0]
    current = await page.get_attribute("#orders-chart rect.bar.current", "data-hour")
    assert current == later.replace(minute=0, second=0, microsecond=0).isoformat().replace(
        "+00:00", ".000Z"
    )


@pytest.mark.browser
@pytest.mark.slow
async def test_missing_materializer_is_shown_and_the_data_comes_when_it_starts(
    stack: Stack, browser: Browser
) -> None:
    stack.stop("materializer")
    stack.start_gateway()
    page = await open_kiosk(browser, stack)
    await page.wait_for_selector("body[data-connection=live][data-degraded]")
    assert await text(page, "#status-text") == "Live · data unavailable"
    assert await page.is_visible("[data-panel=revenue] .error")

    stack.start_materializer()
    await page.wait_for_selector("body[data-connection=live]:not([data-degraded])")
    await wait_text(page, "#revenue-net", "0.00")
    assert await text(page, "#status-text") == "Live"
    assert await page.is_hidden("[data-panel=revenue] .error")
