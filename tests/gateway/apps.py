"""An in-process gateway with chosen settings, for tests that need more than one configuration."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from gateway.app import create_app, state
from gateway.settings import Settings
from tests.gateway.conftest import until


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of a gateway app (lifespan running, NATS connected)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await until(lambda: state(app).upstream.connected)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http
