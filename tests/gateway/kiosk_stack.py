"""The running system the kiosk tests drive, and helpers to read the page.

nats-server, the materializer and the gateway run as child processes started through
the `pulse-bi` CLI, as an operator runs them, so a test can stop and restart one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import nats
from playwright.async_api import Browser, Page

from pulse_bi.natsserver import LocalNatsServer, free_port
from pulse_bi.streams import ensure_stream
from tests.clock import clear_of_the_hour
from tests.conftest import cloud_event, publish_events


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
        gateway = [sys.executable, "-m", "pulse_bi", "gateway"]
        self._spawn("gateway", gateway, {"GATEWAY_LOG_LEVEL": "warning", **self.gateway_env, **env})
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


async def open_kiosk(
    browser: Browser,
    stack: Stack,
    query: str = "",
    width: int = 1920,
    height: int = 1080,
    color_scheme: Literal["dark", "light"] = "light",
) -> Page:
    """A fresh page on the kiosk URL, in UTC and en-US so figures read the same anywhere."""
    context = await browser.new_context(
        viewport={"width": width, "height": height},
        timezone_id="UTC",
        locale="en-US",
        color_scheme=color_scheme,
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Anything the Content-Security-Policy blocks (another origin, inline code) counts too.
    await page.add_init_script(
        """document.addEventListener('securitypolicyviolation',
            e => (window.cspViolations ??= []).push(e.violatedDirective + ' ' + e.blockedURI))"""
    )
    await page.goto(f"{stack.url}/kiosk{query}")
    page.set_default_timeout(15_000)
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def open_live(browser: Browser, stack: Stack, query: str = "") -> Page:
    """``open_kiosk``, once the page's live connection is up."""
    page = await open_kiosk(browser, stack, query)
    await page.wait_for_selector("body[data-connection=live]")
    return page


async def page_problems(page: Page) -> list[str]:
    """Script errors and Content-Security-Policy violations the page has had."""
    violations = await page.evaluate("window.cspViolations ?? []")
    return [*page.errors, *violations]  # type: ignore[attr-defined]


# -- events --------------------------------------------------------------------------


class Publisher:
    """Publishes contract events, timed now, to JetStream; remembers the last sequence."""

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

    async def publish(self, event_type: str, data: dict[str, Any]) -> None:
        """Publish one event, timed now."""
        event = cloud_event(event_type, data, time=datetime.now(UTC).isoformat())
        self.sequence = await publish_events(self.js, event)


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
    Published clear of the turn of an hour (``clear_of_the_hour``).
    """
    await clear_of_the_hour()
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


async def start_with_world(stack: Stack, pub: Publisher | None = None) -> None:
    """Publish the known day of business, start the gateway and wait until it is applied.

    A test that goes on publishing passes its open `pub`; otherwise one is opened here.
    """
    async with contextlib.AsyncExitStack() as opened:
        if pub is None:
            pub = await opened.enter_async_context(Publisher(stack.nats.url))
        await publish_world(pub)
    stack.start_gateway()
    await wait_applied(stack, pub.sequence)


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
