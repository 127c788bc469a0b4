"""Cluster fixtures: three real nats-servers with JetStream joined by routes, an R3 stream.

Helpers publish like an ERP service does across a failover: each event with its
``Nats-Msg-Id``, published again until JetStream acknowledges it (the stream's duplicate
window drops the second copy when the first one had been stored after all).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from pulse_bi.contract import STREAM_NAME
from pulse_bi.natscluster import LocalNatsCluster
from pulse_bi.streams import ensure_stream
from tests.conftest import SUBJECTS, cloud_event
from tests.gateway.conftest import server_factory  # noqa: F401  (fixture)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalNatsCluster]:
    """Three nats-servers with JetStream on free ports, routed to each other."""
    with LocalNatsCluster(store_dir=tmp_path / "cluster") as running:
        yield running


async def connect(urls: list[str] | str, **options: Any) -> NATS:
    """A client of the cluster with the settings docs/SCALING.md recommends."""
    servers = urls.split(",") if isinstance(urls, str) else urls
    return await nats.connect(
        servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.2, **options
    )


async def create_stream(
    js: JetStreamContext, replicas: int = 3, timeout: float = 30.0
) -> StreamInfo:
    """PULSE_EVENTS with ``replicas`` copies, once the cluster has elected its meta leader."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await ensure_stream(js, replicas=replicas)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.fixture
async def cluster_nc(cluster: LocalNatsCluster) -> AsyncIterator[NATS]:
    client = await connect(cluster.urls)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def cluster_js(cluster_nc: NATS) -> JetStreamContext:
    """JetStream on the cluster with PULSE_EVENTS created as R3."""
    js = cluster_nc.jetstream()
    info = await create_stream(js)
    assert info.config.num_replicas == 3
    return js


async def stream_leader(js: JetStreamContext) -> str:
    info = await js.stream_info(STREAM_NAME)
    assert info.cluster is not None and info.cluster.leader is not None
    return info.cluster.leader


async def publish_until_acked(
    js: JetStreamContext, event: dict[str, Any], deadline: float = 60.0
) -> int:
    """Publish one event, again and again with the same id until JetStream acknowledges."""
    subject = "pulse.events." + SUBJECTS[event["type"]]
    payload = json.dumps(event).encode()
    give_up = time.monotonic() + deadline
    while True:
        try:
            ack = await js.publish(
                subject, payload, headers={"Nats-Msg-Id": event["id"]}, timeout=1.0
            )
            return int(ack.seq)
        except Exception:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.05)


def order_event(
    total: str = "10.00", quantity: int = 1, time_: str | None = None
) -> dict[str, Any]:
    envelope: dict[str, Any] = {}
    if time_ is not None:
        envelope["time"] = time_
    return cloud_event(
        "order.created",
        {
            "order_id": uuid.uuid4().hex,
            "customer_id": "C-1",
            "channel": "web",
            "total_amount": total,
            "lines": [{"sku": "SKU-1", "quantity": quantity, "unit_price": total}],
        },
        **envelope,
    )
