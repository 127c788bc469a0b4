"""Headless Chromium for the page tests, and a browser context that reaches only this machine."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, Route

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


async def offline_context(browser: Browser, **options: object) -> tuple[BrowserContext, list[str]]:
    """A context that aborts every request to another host; returns it and those URLs."""
    context = await browser.new_context(
        viewport={"width": 1440, "height": 900}, timezone_id="UTC", locale="en-US", **options
    )
    blocked: list[str] = []

    async def guard(route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort("internetdisconnected")

    await context.route("**/*", guard)
    return context, blocked
