"""Two materializer replicas behind one queue group: reads never go back in version, a
replica that falls too far behind leaves the group, and killing the replica that answers
costs clients nothing (docs/SCALING.md, "Monotonic reads")."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from gateway.app import state
from gateway.settings import Settings as GatewaySettings
from materializer.app import Materializer
from pulse_bi.natsserver import LocalNatsServer, free_port
from tests.cluster.conftest import order_event
from tests.conftest import local_materializer, publish_events
from tests.gateway.conftest import Server, until

pytestmark = pytest.mark.slow

SUMMARY = '{ salesSummary(from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z") { orders } }'


#: Makes an in-process replica: ``replica("a", **setting_changes)``.
Replica = Callable[..., Materializer]
#: A gateway without caches (every read reaches a replica) and a client of it.
UncachedGateway = tuple[Server, httpx.AsyncClient]


@pytest.fixture
def replica(nats_server: LocalNatsServer, tmp_path: Path) -> Replica:
    """An in-process replica on the test server with a DuckDB file of its own (``name``)."""

    def make(name: str, **changes: Any) -> Materializer:
        path = tmp_path / f"{name}.duckdb"
        settings = local_materializer(nats_server.url, path, heartbeat_interval=0.2, **changes)
        return Materializer(settings)

    return make


class Held:
    """Holds a replica's single writer thread: it receives events but applies none."""

    def __init__(self, replica: Materializer) -> None:
        assert replica.ingestor is not None
        self.release = threading.Event()
        replica.ingestor._writer.submit(self.release.wait)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()


def upstream_of(server: Server) -> Any:
    """The gateway's upstream client (uvicorn runs it in a thread of the test process)."""
    assert server.server is not None
    return state(server.server.config.app).upstream


async def orders(http: httpx.AsyncClient) -> int:
    response = await http.post("/graphql", json={"query": SUMMARY})
    body = response.json()
    assert "errors" not in body, body
    return int(body["data"]["salesSummary"]["orders"])


@pytest.fixture
async def uncached_gateway(
    nats_server: LocalNatsServer, server_factory: Any
) -> AsyncIterator[UncachedGateway]:
    """A gateway that asks the materializers on every request (no result cache)."""
    settings = GatewaySettings(
        nats_url=nats_server.url,
        host="127.0.0.1",
        port=free_port(),
        cache_entries=0,
        response_cache_entries=0,
        query_timeout=1.0,
    )
    server = server_factory(settings)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        yield server, http


async def test_reads_never_go_back_when_one_replica_lags(
    js: JetStreamContext,
    replica: Replica,
    uncached_gateway: UncachedGateway,
) -> None:
    server, http = uncached_gateway
    first = await publish_events(js, *(order_event() for _ in range(5)))
    async with replica("a") as a, replica("b") as b:
        await a.wait_for_sequence(first)
        await b.wait_for_sequence(first)
        with Held(b):
            last = await publish_events(js, *(order_event() for _ in range(7)))
            await a.wait_for_sequence(last)
            seen = [await orders(http) for _ in range(16)]
        # Each answer from b (5 orders) after one from a (12) would go backwards.
        assert seen == sorted(seen), seen
        assert seen[-1] == 12
        assert upstream_of(server).served.older_replies > 0  # b did answer, and was not served


async def test_a_replica_far_behind_leaves_the_read_group_until_it_catches_up(
    js: JetStreamContext,
    replica: Replica,
    uncached_gateway: UncachedGateway,
) -> None:
    _, http = uncached_gateway
    async with replica("a") as a, replica("b", read_max_lag=10) as b:
        assert b.service is not None and b.service.reading
        with Held(b):
            last = await publish_events(js, *(order_event() for _ in range(30)))
            await a.wait_for_sequence(last)
            await until(lambda: not b.service.reading, timeout=10)  # type: ignore[union-attr]
            answered_before = b.metrics.queries.labels("sales_summary", "ok")._value.get()
            seen = [await orders(http) for _ in range(10)]
            assert seen == [30] * 10
            # Out of the group: not one request reached it.
            assert b.metrics.queries.labels("sales_summary", "ok")._value.get() == answered_before
            assert b.stats()["reading"] is False
        await b.wait_for_sequence(last)
        await until(lambda: b.service.reading, timeout=10)  # type: ignore[union-attr]
        assert b.read_gate is not None and b.read_gate.left == 1


def _spawn_replica(url: str, path: Path, http_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": url,
        "DUCKDB_PATH": str(path),
        "DATA_PATH": str(path.parent),
        "MATERIALIZER_HTTP_PORT": str(http_port),
        "HEARTBEAT_INTERVAL": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pulse_bi", "materializer"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def replica_processes(nats_server: LocalNatsServer, tmp_path: Path) -> Iterator[list[Any]]:
    """Two materializer processes (SIGKILL-able), each with its HTTP port and file."""
    replicas: list[Any] = []
    for name in ("a", "b"):
        port = free_port()
        process = _spawn_replica(nats_server.url, tmp_path / f"{name}.duckdb", port)
        replicas.append((process, port))
    yield replicas
    for process, _ in replicas:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _applied(port: int) -> int:
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            response = await http.get(f"http://127.0.0.1:{port}/stats")
            return int(response.json()["last_sequence"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


async def test_killing_the_answering_replica_costs_clients_nothing(
    js: JetStreamContext,
    replica_processes: list[Any],
    uncached_gateway: UncachedGateway,
) -> None:
    _, http = uncached_gateway
    last = await publish_events(js, *(order_event() for _ in range(9)))
    for _, port in replica_processes:

        async def caught_up(port: int = port) -> bool:
            return await _applied(port) == last

        await until(caught_up, timeout=60, interval=0.2)
    errors: list[str] = []
    seen: list[int] = []

    async def reader() -> None:
        while len(seen) < 60:
            response = await http.post("/graphql", json={"query": SUMMARY})
            body = response.json()
            if "errors" in body:
                errors.append(str(body["errors"]))
            else:
                seen.append(body["data"]["salesSummary"]["orders"])

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    await until(lambda: len(seen) >= 10, timeout=20)
    answered_before_kill = len(seen)
    victim, _ = replica_processes[0]
    victim.kill()  # SIGKILL mid-traffic: requests it held get no reply
    victim.wait()
    await asyncio.gather(*readers)
    assert errors == []
    assert set(seen) == {9}
    assert len(seen) - answered_before_kill >= 40  # reads went on after the kill
