"""Fixtures shared by all tests: a real nats-server with JetStream on a free port, an
in-process materializer on a tmp DuckDB file, and helpers to publish events."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from materializer.settings import Settings as MaterializerSettings
from pulse_bi.natsserver import LocalNatsServer
from pulse_bi.streams import ensure_stream

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The handlers the session started with, and changes made outside any test's own scope
#: (a wider fixture's setup or teardown), which the fixture below cannot see.
_SESSION_HANDLERS = {sig: signal.getsignal(sig) for sig in _SIGNALS}
_CHANGED_BETWEEN_TESTS: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Put back the session's handlers before each test, and note who changed them."""
    for sig, handler in _SESSION_HANDLERS.items():
        found = signal.getsignal(sig)
        if found is not handler:
            _CHANGED_BETWEEN_TESTS.append(f"{sig.name} was {found!r} before {item.nodeid}")
            signal.signal(sig, handler)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _CHANGED_BETWEEN_TESTS:
        terminalreporter.section("signal handlers changed between tests")
        for line in _CHANGED_BETWEEN_TESTS:
            terminalreporter.line(line)


@pytest.fixture(autouse=True)
def signal_handlers_left_as_found() -> Iterator[None]:
    """Fail a test that leaves SIGINT or SIGTERM with another handler, and put it back.

    uvicorn serving on the main thread once put back, on exit, the SIGINT handler the
    test runner had set for a fixture's setup: a stale one holding that fixture's value.
    Every later ``asyncio.run`` then wrote out its repr (~40 ms each: a Hypothesis test
    of 300 examples took 16 s instead of 3), and Ctrl-C went to a finished task.
    """
    found = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    yield
    changed = [sig.name for sig in _SIGNALS if signal.getsignal(sig) is not found[sig]]
    for sig, handler in found.items():
        signal.signal(sig, handler)
    assert not changed, f"the test left other handlers for {', '.join(changed)}"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalNatsServer]:
    """A fresh nats-server with JetStream and a temporary store, stopped after the test."""
    with LocalNatsServer(store_dir=tmp_path / "jetstream") as server:
        yield server


@pytest.fixture
async def nc(nats_server: LocalNatsServer) -> AsyncIterator[NATS]:
    """A NATS client connected to the test server."""
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.drain()


def local_materializer(nats_url: str, duckdb_path: Path, **changes: Any) -> MaterializerSettings:
    """Settings of an in-process materializer of tests and benchmarks: no HTTP port, its
    data directory beside the DuckDB file, a version heartbeat every 0.5 s."""
    defaults: dict[str, Any] = {"http_port": 0, "heartbeat_interval": 0.5}
    return MaterializerSettings(
        nats_url=nats_url,
        data_path=duckdb_path.parent,
        duckdb_path=duckdb_path,
        **(defaults | changes),
    )


@pytest.fixture
def materializer_settings(nats_server: LocalNatsServer, tmp_path: Path) -> MaterializerSettings:
    """Settings of an in-process materializer on the test server and a tmp DuckDB file."""
    return local_materializer(nats_server.url, tmp_path / "pulse_bi.duckdb")


@pytest.fixture
async def materializer(materializer_settings: MaterializerSettings) -> AsyncIterator[Any]:
    """A running in-process materializer (``await m.wait_for_sequence(n)`` to sync)."""
    from materializer.app import Materializer

    async with Materializer(materializer_settings) as running:
        yield running


@pytest.fixture
async def js(nc: NATS) -> JetStreamContext:
    """JetStream on the test server, with the PULSE_EVENTS stream created."""
    context = nc.jetstream()
    await ensure_stream(context)
    return context


def cloud_event(event_type: str, data: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    """A CloudEvents 1.0 envelope of the Pulse ERP contract (tests build events with it)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": envelope.pop("id", None) or uuid.uuid4().hex,
        "source": "/tests",
        "type": event_type,
        "time": "2026-11-25T10:04:05Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    event.update(envelope)
    return event


#: Subject suffix of each event type (docs/EVENTS.md).
SUBJECTS = {
    "order.created": "orders.created",
    "order.cancelled": "orders.cancelled",
    "invoice.issued": "invoices.issued",
    "payment.received": "payments.received",
    "stock.moved": "stock.moved",
    "product.updated": "products.updated",
    "customer.updated": "customers.updated",
}


async def publish_events(js: JetStreamContext, *events: dict[str, Any] | bytes) -> int:
    """Publish events (dicts as CloudEvents JSON, bytes as they are); return the last sequence."""
    sequence = 0
    for event in events:
        if isinstance(event, bytes):
            ack = await js.publish("pulse.events.bad.input", event)
        else:
            subject = "pulse.events." + SUBJECTS.get(event["type"], "unknown.type")
            ack = await js.publish(
                subject, json.dumps(event).encode(), headers={"Nats-Msg-Id": event["id"]}
            )
        sequence = ack.seq
    return sequence
