"""Fixtures shared by all tests: a real nats-server with JetStream on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from pulse_bi.natsserver import LocalNatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalNatsServer]:
    """A fresh nats-server with JetStream and a temporary store, stopped after the test."""
    server = LocalNatsServer(store_dir=tmp_path / "jetstream").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nc(nats_server: LocalNatsServer) -> AsyncIterator[NATS]:
    """A NATS client connected to the test server."""
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.drain()
