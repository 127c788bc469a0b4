"""/health, /stats and /metrics of the materializer over HTTP (its own port)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from materializer.app import Materializer


def create_app(materializer: Materializer) -> Starlette:
    """The operational HTTP app of one materializer."""

    async def health(request: Request) -> Response:
        # degraded is 200: the process serves reads and applies events, and restarting it
        # would not bring lost events back or free disk space (docs/OPERATIONS.md "Health").
        status, reason = materializer.health()
        body: dict[str, object] = {"status": status, "reason": reason}
        body.update(materializer.stats())
        return JSONResponse(body, status_code=503 if status == "unavailable" else 200)

    async def stats(request: Request) -> Response:
        return JSONResponse(materializer.stats())

    async def metrics(request: Request) -> Response:
        return Response(
            generate_latest(materializer.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/stats", stats),
            Route("/metrics", metrics),
        ]
    )


class HttpServer:
    """uvicorn serving the operational app inside the materializer's event loop."""

    def __init__(self, materializer: Materializer, host: str, port: int) -> None:
        config = uvicorn.Config(
            create_app(materializer),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        # The materializer handles SIGTERM/SIGINT itself (commit, then exit).
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._address = f"{host}:{port}"
        self._task: asyncio.Task[None] | None = None

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit:  # uvicorn exits when it cannot bind
            raise OSError(
                f"the materializer's HTTP server cannot listen on {self._address}; "
                "set MATERIALIZER_HTTP_PORT to a free port (0 turns it off)"
            ) from None

    async def start(self) -> None:
        """Start serving; raise if the port cannot be bound."""
        self._task = asyncio.create_task(self._serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError("the materializer's HTTP server did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
