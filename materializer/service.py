"""Named read queries over NATS request/reply (a nats.micro service in a queue group).

The materializer is the only process that opens the DuckDB file, so it answers the
gateway's reads itself. Every replica joins the same queue group; NATS spreads the
requests. Queries run on DuckDB cursors in worker threads, concurrently with ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.micro import Request, ServiceConfig, add_service
from nats.micro.service import EndpointConfig, Service
from prometheus_client import generate_latest

from materializer import faults, readiness
from materializer.metrics import MaterializerMetrics
from materializer.queries import BadQuery, QueryContext
from materializer.store import Store
from pulse_bi import __version__
from pulse_bi.contract import (
    QUERY_QUEUE_GROUP,
    QUERY_SERVICE_NAME,
    QueryError,
    QueryReply,
    query_subject,
    wire_encoder,
)
from pulse_bi.contract.registry import QUERY_NAMES
from pulse_bi.tracing import continued

log = logging.getLogger("pulse_bi.materializer.service")

_T = TypeVar("_T")

_encode = wire_encoder.encode
_decode_params = msgspec.json.Decoder(dict[str, Any]).decode

#: Subjects of the operational endpoints (same answers as the HTTP server's).
HEALTH_SUBJECT = "pulse.bi.materializer.health"
STATS_SUBJECT = "pulse.bi.materializer.stats"
METRICS_SUBJECT = "pulse.bi.materializer.metrics"


class QueryService:
    """Answers named queries and the health/stats/metrics endpoints over NATS."""

    def __init__(
        self,
        nc: NATS,
        store: Store,
        metrics: MaterializerMetrics,
        stats: Callable[[], dict[str, Any]],
        workers: int,
        *,
        health: Callable[[], tuple[str, str]] | None = None,
        context: Callable[[], QueryContext] | None = None,
        wait_for: Callable[[int, float], Awaitable[None]] | None = None,
        version: Callable[[], int] | None = None,
    ) -> None:
        self._nc = nc
        self._store = store
        self._metrics = metrics
        self._stats = stats
        self._health_of = health or (lambda: ("ok", "ok"))
        self._context = context
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="duckdb-query")
        self._service: Service | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self._wait_for = wait_for
        #: The version a reply carries; cheaper than ``stats`` (which stats the files),
        #: since every query asks for it.
        self._version = version
        self._query_endpoints: list[Any] = []
        #: Whether this replica is in the read queue group (``materializer.readiness``).
        self.reading = True

    async def start(self) -> None:
        """Register the service and its endpoints."""
        self._service = await add_service(
            self._nc,
            ServiceConfig(
                name=QUERY_SERVICE_NAME,
                version=__version__,
                description="Pulse BI named read queries over the DuckDB aggregates",
                queue_group=QUERY_QUEUE_GROUP,
            ),
        )
        for name in QUERY_NAMES:  # every spec of the registry
            await self._service.add_endpoint(
                EndpointConfig(
                    name=name,
                    subject=query_subject(name),
                    handler=self._query_handler(name),
                    queue_group=QUERY_QUEUE_GROUP,
                )
            )
        # The query endpoints, to leave and join the queue group by (nats.micro 2.16
        # has no public call to pause one endpoint; these are its own start and stop).
        self._query_endpoints = list(self._service._endpoints)
        for name, subject, handler in (
            ("health", HEALTH_SUBJECT, self._health),
            ("stats", STATS_SUBJECT, self._stats_endpoint),
            ("metrics", METRICS_SUBJECT, self._metrics_endpoint),
        ):
            # Operational endpoints answer per replica, not through the queue group:
            # each materializer has its own state to report.
            await self._service.add_endpoint(
                EndpointConfig(name=name, subject=f"{subject}.{self._service.id}", handler=handler)
            )
            await self._service.add_endpoint(
                EndpointConfig(
                    name=f"{name}-any",
                    subject=subject,
                    handler=handler,
                    queue_group=QUERY_QUEUE_GROUP,
                )
            )

    def _query_handler(self, name: str) -> Callable[[Request], Any]:
        # nats-py runs one subscription's callbacks one after another: awaiting the query
        # here would answer a single request per named query at a time, whatever
        # QUERY_WORKERS says, and one slow `overdue_invoices` would hold every other one
        # (gateway time-outs under ingest). Each request gets a task; the thread pool
        # bounds how many run at once.
        async def handle(request: Request) -> None:
            task = asyncio.create_task(self._respond(name, request))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

        return handle

    async def leave_reads(self) -> None:
        """Stop taking named queries from the queue group (health and stats stay)."""
        if self.reading:
            self.reading = False
            for endpoint in self._query_endpoints:
                await endpoint._stop()
            # Once the server has the unsubscriptions, it sends no request here any more.
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)

    async def join_reads(self) -> None:
        """Take named queries from the queue group again."""
        if not self.reading:
            for endpoint in self._query_endpoints:
                await endpoint._start()
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)
            self.reading = True

    async def _respond(self, name: str, request: Request) -> None:
        tracer = continued("materializer", request.headers)
        try:
            wanted = readiness.min_version(request.headers)
            if wanted and self._wait_for is not None:
                await readiness.wait_for_version(self._wait_for, wanted, self._store_version())
            if tracer is None:
                reply = await self.answer(name, request.data)
            else:
                # The gateway traces this request: continue its trace (pulse_bi/tracing.py).
                attributes = {"messaging.system": "nats", "pulse_bi.query": name}
                with tracer.span(f"answer {name}", request.headers, True, attributes):
                    reply = await self.answer(name, request.data)
            await request.respond(reply)
        except Exception:  # the connection went away: the requester times out and retries
            log.warning("could not send the reply to a %s query", name, exc_info=True)

    async def answer(self, name: str, payload: bytes) -> bytes:
        """The encoded ``QueryReply`` of one named query request."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            params = _decode_params(payload) if payload.strip() else {}
            reply = await self._run(name, params)
        except (BadQuery, msgspec.DecodeError) as exc:
            outcome = "bad_request"
            reply = _error("bad_request", str(exc), self._store_version())
        except Exception as exc:
            if faults.is_infrastructure(exc):  # e.g. the file invalidated by a full disk
                outcome = "unavailable"
                log.warning("named query %s failed: %s", name, faults.describe(exc))
                reply = _error("unavailable", faults.describe(exc), self._store_version())
            else:
                outcome = "internal"
                log.exception("named query %s failed", name)
                reply = _error("internal", f"{type(exc).__name__}: {exc}", self._store_version())
        self._metrics.queries.labels(name, outcome).inc()
        self._metrics.query_seconds.labels(name).observe(time.perf_counter() - started)
        return reply

    async def _run(self, name: str, params: dict[str, Any]) -> bytes:
        loop = asyncio.get_running_loop()
        limit = self._nc.max_payload - 1024
        spent = 0.0  # CPU seconds, a page too large to send included
        while True:
            version = self._store_version()
            context = self._context() if self._context is not None else None
            query = functools.partial(self._store.query, name, params, context=context)
            result, cpu = await loop.run_in_executor(self._pool, _on_cpu, query)
            spent += cpu
            encoded = _encode(
                QueryReply(
                    version=version,
                    data=result.data,
                    next_offset=result.next_offset,
                    cpu_seconds=round(spent, 6),
                )
            )
            if len(encoded) <= limit:
                return encoded
            # Too large for one NATS message: ask for a smaller page.
            page = int(params.get("limit") or 1000)
            if page <= 1 or not isinstance(result.data, list):
                raise BadQuery(f"result of {name} is larger than the NATS max payload")
            params = {**params, "limit": max(1, page // 2)}

    def _store_version(self) -> int:
        if self._version is not None:
            return self._version()
        return int(self._stats().get("last_sequence") or 0)

    def use_store(self, store: Store) -> None:
        """Answer from ``store`` from now on (the file was opened again after a fault)."""
        self._store = store

    async def _health(self, request: Request) -> None:
        status, reason = self._health_of()
        await request.respond(_encode({**self._stats(), "status": status, "reason": reason}))

    async def _stats_endpoint(self, request: Request) -> None:
        await request.respond(_encode(self._stats()))

    async def _metrics_endpoint(self, request: Request) -> None:
        await request.respond(generate_latest(self._metrics.registry))

    async def stop(self) -> None:
        """Deregister the endpoints and wait for running queries."""
        if self._service is not None:
            if not self.reading:  # their subscriptions are gone already (leave_reads)
                self._service._endpoints = [
                    e for e in self._service._endpoints if e not in self._query_endpoints
                ]
            await self._service.stop()
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=10)
        self._pool.shutdown(wait=True)


def _on_cpu(call: Callable[[], _T]) -> tuple[_T, float]:
    """``call()`` and the CPU seconds this thread spent on it (DuckDB runs a query on the
    calling thread; with ``DUCKDB_THREADS`` above 1 its own threads' share is not counted)."""
    started = time.thread_time()
    result = call()
    return result, time.thread_time() - started


def _error(code: str, message: str, version: int) -> bytes:
    return _encode(QueryReply(version=version, error=QueryError(code=code, message=message)))  # type: ignore[arg-type]
