"""The landing page at ``/``: what runs, pipeline state, rejected events, where to go.

Browser tests run Debian's Chromium against the real system with every request to
another host aborted. The kiosk chart's axis check rides along: it needs a page only.
"""

from __future__ import annotations

import os

import anyio
import httpx
import pytest
from playwright.async_api import Browser, Page

from gateway import landing
from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import cloud_event, publish_events
from tests.gateway.browser import offline_context
from tests.gateway.kiosk_stack import Publisher, Stack, publish_world, wait_applied

# Starlette serves files through anyio.open_file, which anyio imports lazily. Importing it
# here, not first inside a request task deep in the stack, avoids CPython 3.11.7's "AST
# constructor recursion depth mismatch" when pytest's import hook compiles it.
assert anyio.open_file is not None

SCREENSHOT = os.environ.get("LANDING_SCREENSHOT")  # e.g. docs/landing.png


async def test_root_is_the_landing_page_with_its_links_and_headers() -> None:
    app = create_app(Settings(nats_url="nats://127.0.0.1:1"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for link in ('href="/graphql"', 'href="/kiosk/', 'href="/metrics"', 'href="/health"'):
            assert link in page.text
        assert "/query/sales/hourly?hours=24" in page.text
        assert "https://" not in page.text and "http://" not in page.text
        for asset in ("landing.js", "landing.css"):
            assert (await http.get(f"/static/landing/{asset}")).status_code == 200
        assert (await http.get("/static/landing/index.html")).status_code == 404


def test_page_behind_a_proxy_prefix_links_under_it() -> None:
    page = landing.render_page("/bi")
    assert 'href="/bi/graphql"' in page and 'src="/bi/static/landing/landing.js"' in page
    assert 'href="/graphql"' not in page


async def text(page: Page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()


@pytest.mark.browser
@pytest.mark.slow
async def test_landing_shows_state_pipeline_and_rejected_events_offline(
    stack: Stack, browser: Browser
) -> None:
    async with Publisher(stack.nats.url) as pub:
        await publish_world(pub)
        bad = cloud_event("order.created", {"order_id": "O-BAD"}, time="2026-11-30T10:00:00Z")
        pub.sequence = await publish_events(pub.js, bad)
    stack.start_gateway()
    await wait_applied(stack, pub.sequence)

    context, blocked = await offline_context(browser)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(15_000)
    await page.goto(f"{stack.url}/")
    await page.wait_for_function(
        "() => document.getElementById('applied').textContent !== '\\u2013'"
    )

    assert await text(page, "#nats-state") == "connected"
    assert (await text(page, "#materializer-state")).startswith("answering")
    assert await text(page, "#rejected") == "1"
    assert await text(page, "#lag") == "0 events"
    assert await text(page, "#sequence") == f"{pub.sequence} of {pub.sequence}"
    assert " s ago (" in await text(page, "#last-event")
    rows = page.locator("#rejects-table tbody tr")
    assert await rows.count() == 1
    row = await rows.first.inner_text()
    assert "order.created" in row and "data: missing 'customer_id'" in row
    graphiql = page.locator("#graphiql-link")
    assert await graphiql.get_attribute("href") == "/graphql"
    assert blocked == [] and errors == []
    if SCREENSHOT:
        await page.screenshot(path=SCREENSHOT, full_page=True)


@pytest.mark.browser
@pytest.mark.slow
async def test_kiosk_chart_fits_a_five_digit_axis_label(stack: Stack, browser: Browser) -> None:
    stack.start_gateway()
    context, _ = await offline_context(browser)
    page = await context.new_page()
    await page.goto(f"{stack.url}/kiosk/")
    overflow = await page.evaluate(
        """async () => {
            const { drawHourlyBars } = await import('./static/chart.js');
            const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
            svg.style.cssText = 'width: 600px; height: 300px; font-size: 24px';
            document.body.append(svg);
            const buckets = Array.from({ length: 24 }, (_, i) =>
                ({ hour: new Date(Date.UTC(2026, 10, 30, i)), orders: i === 23 ? 6000 : 150 }));
            const fmt = {
                integer: (n) => n.toLocaleString('en-US'),
                hour: (d) => String(d.getUTCHours()),
            };
            drawHourlyBars(svg, buckets, fmt);
            const box = svg.getBoundingClientRect();
            return [...svg.querySelectorAll('text.axis[text-anchor=end]')].map(
                (t) => [t.textContent, t.getBoundingClientRect().left - box.left]);
        }"""
    )
    labels = dict(overflow)
    assert "10,000" in labels
    assert all(left >= 0 for left in labels.values()), labels
