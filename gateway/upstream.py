"""Named-query client: NATS request/reply to the materializer, with paging and a versioned cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from gateway.errors import BadUserInput, GatewayError, UpstreamError, UpstreamUnavailable
from gateway.metrics import Metrics
from gateway.replicas import Key, Served
from gateway.settings import Settings
from gateway.versions import Versions, reads
from pulse_bi.contract import (
    MIN_VERSION_HEADER,
    QUERIES,
    QueryReply,
    query_subject,
    reply_decoder,
    to_wire,
)
from pulse_bi.natsclient import client_options
from pulse_bi.tracing import Tracer, set_error

log = logging.getLogger("gateway.upstream")

#: Pages fetched for one list before giving up (5000 rows a page: 500k rows).
MAX_PAGES = 100
PAGE_SIZE = 5000

_params_encoder = msgspec.json.Encoder(order="sorted")
#: Replies decoded into each query's typed rows (``QuerySpec.result``): a field the
#: materializer renamed or dropped is an error here, not a silent null.
_DECODERS: dict[str, msgspec.json.Decoder[QueryReply[Any]]] = {
    spec.name: msgspec.json.Decoder(QueryReply[spec.result])  # type: ignore[name-defined]
    for spec in QUERIES
}


class _NoReply(Exception):
    """No reply came (worth asking again); `error` is what the caller sees if none does."""

    def __init__(self, reason: str, error: UpstreamUnavailable) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class Result(msgspec.Struct, frozen=True):
    """One named query's data and the materializer version it was read at."""

    data: Any
    version: int


@dataclass(slots=True)
class Charge:
    """What the round trips of one live refresh cost, for its share of the time
    (``gateway.live.Budget``; docs/GATEWAY.md, "A group's window")."""

    #: Seconds spent waiting for replies (every round trip, answered or not).
    waited: float = 0.0
    #: The materializer's CPU seconds for the replies, as each says (``cpu_seconds``).
    work: float = 0.0

    def answered(self, elapsed: float, cpu_seconds: float | None) -> None:
        """Count a reply that took ``elapsed`` seconds to come and says ``cpu_seconds``.

        A reply that does not say (an older materializer), or says what cannot be (less
        than 0, more than the round trip, not a number), counts its whole round trip.
        """
        if cpu_seconds is None or not 0.0 <= cpu_seconds <= elapsed:  # NaN compares false
            cpu_seconds = elapsed
        self.work += cpu_seconds


#: The ``Charge`` of the live refresh running in this context (None: not a refresh).
CHARGE: ContextVar[Charge | None] = ContextVar("gateway_live_charge", default=None)


class Upstream:
    """The gateway's only way to the data: the materializer's named queries over NATS."""

    def __init__(self, settings: Settings, versions: Versions, metrics: Metrics) -> None:
        self.settings = settings
        self.versions = versions
        self.metrics = metrics
        self.nc: NATS | None = None
        #: (query, encoded params, pages followed) -> (data generations it was read at, result).
        self._cache: OrderedDict[Key, tuple[tuple[int, ...], Result]] = OrderedDict()
        self._inflight: dict[tuple[Any, ...], asyncio.Future[Result]] = {}
        self._on_connect: list[Callable[[NATS], Awaitable[None]]] = []
        self._connector: asyncio.Task[None] | None = None
        self._closing = False
        self._error_logged_at: float | None = None
        self.last_error: str | None = "not connected to NATS yet"
        self.requests = 0
        self.cache_hits = 0
        #: Spans and `traceparent` headers for named queries (set by the gateway).
        self.tracing = Tracer("gateway", False)
        #: Newest result served per query and params: reads never go back in version.
        self.served = Served(max(settings.cache_entries, 1000))

    # -- connection -------------------------------------------------------------------

    def on_connect(self, callback: Callable[[NATS], Awaitable[None]]) -> None:
        """Run `callback(nc)` once the first connection is up (e.g. to subscribe)."""
        self._on_connect.append(callback)

    async def start(self) -> None:
        """Connect in the background (nats-py retries forever); wait briefly for it."""
        self._connector = asyncio.create_task(self._connect(), name="nats-connect")
        # Usually NATS is up: be ready before the first request instead of failing it.
        await asyncio.wait({self._connector}, timeout=self.settings.query_timeout)

    async def _connect(self) -> None:
        try:
            nc = await nats.connect(
                **client_options(self.settings.nats_url, "pulse-bi-gateway"),
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnect,
                reconnected_cb=self._on_reconnect,
            )
        except Exception as exc:  # only for bad URLs and the like: down servers are retried
            self.last_error = f"cannot connect to NATS at {self.settings.nats_url}: {exc}"
            log.error(self.last_error)
            return
        for callback in self._on_connect:
            await callback(nc)
        # Only now count as connected: notices subscribed before the first query.
        self.nc = nc
        self.last_error = None
        self._error_logged_at = None
        url = nc.connected_url.geturl() if nc.connected_url else self.settings.nats_url
        log.info("connected to NATS at %s", url)

    async def _on_error(self, exc: Exception) -> None:
        if not self.connected:
            self.last_error = f"cannot reach NATS at {self.settings.nats_url}: {exc!r}"
            # Say so at once, then every 30 s while it lasts (nats-py keeps retrying).
            now = time.monotonic()
            if self._error_logged_at is None or now - self._error_logged_at >= 30:
                self._error_logged_at = now
                log.warning("%s; retrying", self.last_error)
                return
        log.debug("NATS error: %r", exc)

    async def _on_disconnect(self) -> None:
        if self._closing or self.nc is None or self.nc.is_closed:
            return
        self.last_error = "disconnected from NATS, reconnecting"
        log.warning(self.last_error)

    async def _on_reconnect(self) -> None:
        self.last_error = None
        self._error_logged_at = None
        log.info("reconnected to NATS")

    @property
    def connected(self) -> bool:
        """Whether the NATS connection is up right now."""
        return self.nc is not None and self.nc.is_connected

    async def close(self) -> None:
        """Stop connecting and close the connection."""
        self._closing = True  # a disconnect from here on is ours, not an outage
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.close()

    # -- queries ----------------------------------------------------------------------

    async def query(
        self, name: str, params: dict[str, Any] | msgspec.Struct, *, follow: bool = True
    ) -> Result:
        """The result of one named query, from the cache when the data has not changed since.

        ``params`` is the query's parameter struct (``QuerySpec.params``) or, from REST,
        the raw values the materializer checks. A paged list is followed to its end
        unless ``follow`` is false: then the reply is the one page ``params`` ask for.
        Counted per query name in /metrics: source, latency and errors.
        """
        started = time.perf_counter()
        try:
            result, source = await self._query(name, params, follow)
        except GatewayError as exc:
            self.metrics.named_query_errors.labels(name, exc.code).inc()
            raise
        finally:
            self.metrics.named_query_seconds.labels(name).observe(time.perf_counter() - started)
        self.metrics.named_queries.labels(name, source).inc()
        return result

    async def _query(
        self, name: str, params: dict[str, Any] | msgspec.Struct, follow: bool
    ) -> tuple[Result, str]:
        if isinstance(params, msgspec.Struct):
            params = to_wire(params)
        assert isinstance(params, dict)
        params = {k: v for k, v in params.items() if v is not None}
        topics = reads(name)
        version_key = None if topics is None else self.versions.key(topics)
        if version_key is None:
            return await self._fetch(name, params, follow), "upstream"
        query = (name, _params_encoder.encode(params), follow)
        key = (*query, version_key)
        entry = self._cache.get(query)
        if entry is not None and entry[0] == version_key:
            self._cache.move_to_end(query)
            self.cache_hits += 1
            self.metrics.cache_hits.labels("query").inc()
            return entry[1], "cache"
        inflight = self._inflight.get(key)
        if inflight is not None:
            # Many dashboards asking at once share one round trip.
            return await asyncio.shield(inflight), "shared"
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._fetch(name, params, follow)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[key]
        future.set_result(result)
        self.metrics.cache_misses.labels("query").inc()
        self._remember(query, version_key, result)
        return result, "upstream"

    def _remember(self, query: Key, generations: tuple[int, ...], result: Result) -> None:
        """Keep one result per query and params: the newest generations'.

        Generations only grow, so a result of older ones is never asked for again; keying
        by them kept up to GATEWAY_CACHE_ENTRIES dead results while data changed (gateway
        RSS rising for minutes under ingest). A fetch that started before a newer one and
        ends after it does not replace the newer result.
        """
        if not self.settings.cache_entries:
            return
        entry = self._cache.get(query)
        if entry is not None and any(o > n for o, n in zip(entry[0], generations, strict=True)):
            return
        self._cache[query] = (generations, result)
        self._cache.move_to_end(query)
        if len(self._cache) > self.settings.cache_entries:
            self._cache.popitem(last=False)

    async def _fetch(self, name: str, params: dict[str, Any], follow: bool = True) -> Result:
        """A result at least as new as any served before for this query and params
        (gateway/replicas.py, docs/SCALING.md "Monotonic reads")."""
        key = (name, _params_encoder.encode(params), follow)
        retries = self.settings.query_retries
        for attempt in range(retries + 1):
            floor = self.served.floor(key)
            result = await self._fetch_pages(name, params, floor, follow)
            if result.version >= self.served.floor(key):
                return self.served.serve(key, result)
            self.served.older_replies += 1
            log.info(
                "%s answered at version %d, older than %d served: asking again (%d)",
                name,
                result.version,
                self.served.floor(key),
                attempt + 1,
            )
        newest = self.served.last(key)
        assert newest is not None
        return self.served.serve(key, newest)

    async def _fetch_pages(
        self, name: str, params: dict[str, Any], floor: int, follow: bool
    ) -> Result:
        """Ask the materializer, following `next_offset` until the list is complete
        (``follow``) or not at all (one page)."""
        reply = await self.request(name, params, min_version=floor)
        if reply.next_offset is None or not follow:
            return Result(reply.data, reply.version)
        rows = list(reply.data or [])
        for _ in range(MAX_PAGES):
            if reply.next_offset is None:
                return Result(rows, reply.version)
            page = {**params, "offset": reply.next_offset, "limit": PAGE_SIZE}
            # Later pages from a replica at least as far as the first one's.
            reply = await self.request(name, page, min_version=reply.version)
            rows.extend(reply.data or [])
        raise UpstreamError(f"{name}: more than {MAX_PAGES} pages, narrow the query")

    async def request(
        self,
        name: str,
        params: dict[str, Any],
        timeout: float | None = None,
        retries: int | None = None,
        min_version: int = 0,
    ) -> QueryReply:
        """One named query, asked again when no reply came (docs/GATEWAY.md, "Upstream").

        A timed-out or unanswered request (no responders: a materializer restarting;
        a reply lost with a connection) is asked again up to `GATEWAY_QUERY_RETRIES`
        times after a short pause; NATS spreads the retry over the queue group, so
        another replica may answer. Errors the materializer sends are never retried.
        """
        retries = self.settings.query_retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                return await self._request_once(name, params, timeout, min_version)
            except _NoReply as exc:
                if attempt == retries:
                    raise exc.error from None
                self.metrics.upstream_retries.labels(exc.reason).inc()
                log.info("retrying %s (%s), attempt %d", name, exc.reason, attempt + 2)
                await asyncio.sleep(min(0.05 * 2**attempt, 0.5))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request_once(
        self, name: str, params: dict[str, Any], timeout: float | None, min_version: int = 0
    ) -> QueryReply:
        """One request/reply round trip, traced when tracing is on (W3C headers on NATS);
        ``min_version`` goes in ``Pulse-Min-Version`` (docs/SCALING.md, "Monotonic reads")."""
        floor = {MIN_VERSION_HEADER: str(min_version)} if min_version else {}
        if not self.tracing.enabled:
            return await self._round_trip(name, params, timeout, floor or None)
        attributes = {"messaging.system": "nats", "messaging.destination.name": query_subject(name)}
        with self.tracing.span(f"query {name}", attributes=attributes) as span:
            try:
                headers = {**(self.tracing.headers() or {}), **floor}
                return await self._round_trip(name, params, timeout, headers or None)
            except (GatewayError, _NoReply) as exc:
                set_error(span, str(getattr(exc, "message", exc)))
                raise

    async def _round_trip(
        self,
        name: str,
        params: dict[str, Any],
        timeout: float | None,
        headers: dict[str, str] | None,
    ) -> QueryReply:
        """One request/reply round trip, errors translated to the gateway's own."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            self.metrics.upstream_errors.labels("nats_disconnected").inc()
            raise UpstreamUnavailable(
                f"not connected to NATS at {self.settings.nats_url}: {self.last_error or 'down'}"
            )
        self.requests += 1
        started = time.perf_counter()
        wait = timeout or self.settings.query_timeout
        charge = CHARGE.get()
        try:
            msg = await nc.request(
                query_subject(name), _params_encoder.encode(params), timeout=wait, headers=headers
            )
        except NoRespondersError:
            self.metrics.upstream_errors.labels("no_responders").inc()
            raise _NoReply(
                "no_responders",
                UpstreamUnavailable(
                    "the materializer is not running (nobody answers named queries on NATS)"
                ),
            ) from None
        except (TimeoutError, NatsTimeoutError):
            self.metrics.upstream_errors.labels("timeout").inc()
            raise _NoReply(
                "timeout",
                UpstreamUnavailable(f"the materializer did not answer {name} within {wait:g} s"),
            ) from None
        except Exception as exc:  # connection closed or draining mid-request
            self.metrics.upstream_errors.labels("nats").inc()
            raise _NoReply("nats", UpstreamUnavailable(f"NATS request failed: {exc}")) from None
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.upstream_seconds.observe(elapsed)
            if charge is not None:
                charge.waited += elapsed
        try:
            reply = _DECODERS.get(name, reply_decoder).decode(msg.data)
        except msgspec.DecodeError as exc:
            self.metrics.upstream_errors.labels("bad_reply").inc()
            raise UpstreamError(f"the materializer sent an unreadable reply: {exc}") from None
        if charge is not None:
            charge.answered(elapsed, reply.cpu_seconds)
        if reply.error is not None:
            code, message = reply.error.code, reply.error.message
            self.metrics.upstream_errors.labels(code).inc()
            if code == "bad_request":
                raise BadUserInput(message)
            if code == "unavailable":
                raise UpstreamUnavailable(f"the materializer is unavailable: {message}")
            raise UpstreamError(f"the materializer failed ({code}): {message}")
        return reply

    def cache_stats(self) -> dict[str, int]:
        """Entries, hits and upstream requests, for /stats."""
        return {"entries": len(self._cache), "hits": self.cache_hits, "requests": self.requests}
