"""OpenTelemetry tracing, an optional dependency (`pip install 'pulse-bi[tracing]'`).

The gateway traces when `GATEWAY_TRACING=true`: a span per GraphQL request (continuing
the caller's W3C `traceparent`), a child span per named query sent over NATS, and the
`traceparent` of that span in the NATS request's headers. The materializer continues a
trace whenever a request carries a `traceparent` header, so it traces exactly what a
tracing gateway asks. Spans go to the process's OpenTelemetry tracer provider: the CLI
installs one exporting over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
(docs/OPERATIONS.md "Tracing"); without a provider the API records nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger("pulse_bi.tracing")

try:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    AVAILABLE = True
except ImportError:  # the tracing extra is not installed
    AVAILABLE = False

#: The W3C Trace Context header (and its companion) carried over HTTP and NATS.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but the OpenTelemetry packages are not installed."""


class Tracer:
    """Spans of one component, or nothing at all when tracing is off."""

    def __init__(self, component: str, enabled: bool) -> None:
        if enabled and not AVAILABLE:
            raise TracingUnavailable(
                "tracing needs the OpenTelemetry packages: pip install 'pulse-bi[tracing]'"
            )
        self.enabled = enabled
        self._tracer = trace.get_tracer(f"pulse_bi.{component}") if enabled else None
        self._propagator = TraceContextTextMapPropagator() if enabled else None

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        carrier: Mapping[str, str] | None = None,
        server: bool = False,
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator[Any]:
        """A span, current inside the block; continues `carrier`'s trace when given.

        Yields None when tracing is off.
        """
        if self._tracer is None or self._propagator is None:
            yield None
            return
        parent = None
        if carrier is not None:
            parent = self._propagator.extract({k.lower(): v for k, v in carrier.items()})
        kind = trace.SpanKind.SERVER if server else trace.SpanKind.CLIENT
        with self._tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=dict(attributes or {})
        ) as span:
            yield span

    def headers(self) -> dict[str, str] | None:
        """`traceparent` (and `tracestate`) of the current span, for an outgoing request."""
        if self._propagator is None:
            return None
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier or None


def continued(component: str, carrier: Mapping[str, str] | None) -> Tracer | None:
    """A tracer for a request that carries a `traceparent` (None: do not trace it)."""
    if not AVAILABLE or not carrier or not any(k.lower() == TRACEPARENT for k in carrier):
        return None
    return Tracer(component, True)


def set_error(span: Any, message: str) -> None:
    """Mark a span as failed (no-op for None)."""
    if span is not None and AVAILABLE:
        span.set_status(trace.Status(trace.StatusCode.ERROR, message))


def configure_from_env(service: str, environ: Mapping[str, str]) -> bool:
    """Install an OTLP/HTTP-exporting tracer provider when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    Returns whether one was installed. The exporter reads the standard OTEL_* variables.
    """
    if not AVAILABLE or not (
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed")
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", service)})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


class IngestTraces:
    """The traces events bring (a `traceparent` NATS header set by their publisher).

    A batch whose events carry traces gets a span `apply batch`, linked to each of them
    (a batch has many parents), around its commit and the change notice it publishes;
    the notice carries that span's `traceparent`. Batches of untraced events cost a
    header check per event and nothing more.
    """

    #: Links kept per batch span (OpenTelemetry's default span limit is 128).
    MAX_LINKS = 128

    def __init__(self) -> None:
        self.enabled = AVAILABLE
        self._carriers: dict[int, dict[str, str]] = {}
        self._tracer = Tracer("materializer", True) if AVAILABLE else None

    def received(self, sequence: int, headers: Mapping[str, str] | None) -> None:
        """Remember the trace of one received event, if it has one."""
        if self._tracer is None or not headers:
            return
        carrier = {
            k.lower(): v for k, v in headers.items() if k.lower() in (TRACEPARENT, TRACESTATE)
        }
        if TRACEPARENT in carrier:
            self._carriers[sequence] = carrier

    def forget_before(self, sequence: int) -> None:
        """Drop traces of events before `sequence` (read again, or never applied)."""
        for old in [s for s in self._carriers if s < sequence]:
            del self._carriers[old]

    @contextlib.contextmanager
    def batch(self, first: int, last: int) -> Iterator[Any]:
        """A span for the batch first..last when any of its events is traced."""
        tracer = self._tracer
        carriers = []
        if self._carriers:
            carriers = [
                self._carriers.pop(s) for s in range(first, last + 1) if s in self._carriers
            ]
            self.forget_before(first)
        if tracer is None or tracer._tracer is None or not carriers:
            yield None
            return
        propagator = TraceContextTextMapPropagator()
        links = []
        for carrier in carriers[: self.MAX_LINKS]:
            context = trace.get_current_span(propagator.extract(carrier)).get_span_context()
            if context.is_valid:
                links.append(trace.Link(context))
        attributes = {
            "pulse_bi.first_sequence": first,
            "pulse_bi.last_sequence": last,
            "pulse_bi.traced_events": len(carriers),
        }
        with tracer._tracer.start_as_current_span(
            "apply batch", kind=trace.SpanKind.CONSUMER, links=links, attributes=attributes
        ) as span:
            yield span


def current_headers() -> dict[str, str] | None:
    """`traceparent` of the current span when one is recording (for a published message)."""
    if not AVAILABLE or not trace.get_current_span().is_recording():
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier or None
