"""A node of the 3-node JetStream cluster dies mid-ingest: nothing is lost or doubled, and
the materializer and the gateway carry on by themselves (docs/SCALING.md, "Failover")."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from gateway.settings import Settings as GatewaySettings
from materializer.app import Materializer
from pulse_bi.contract import CHANGES_SUBJECT, STREAM_NAME, notice_decoder
from pulse_bi.natscluster import LocalNatsCluster
from pulse_bi.natsserver import free_port
from tests.cluster.conftest import connect, order_event, publish_until_acked, stream_leader
from tests.conftest import local_materializer
from tests.gateway.conftest import until

#: Slow on a busy 2-core machine: three servers, a RAFT election, drains after it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EVENTS = 600
SUMMARY = '{ salesSummary(from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z") { orders } }'


async def orders_seen(http: httpx.AsyncClient) -> int:
    response = await http.post("/graphql", json={"query": SUMMARY})
    body = response.json()
    assert "errors" not in body, body
    return int(body["data"]["salesSummary"]["orders"])


async def test_killing_the_stream_leader_mid_ingest_loses_nothing(
    cluster: LocalNatsCluster,
    cluster_js: JetStreamContext,
    tmp_path: Path,
    server_factory: Any,
) -> None:
    settings = local_materializer(cluster.url, tmp_path / "m.duckdb", stream_replicas=3)
    gateway = server_factory(
        GatewaySettings(nats_url=cluster.url, host="127.0.0.1", port=free_port())
    )
    watcher = await connect(cluster.urls)
    batches: list[float] = []

    async def on_notice(msg: Msg) -> None:
        if notice_decoder.decode(msg.data).kind != "heartbeat":
            batches.append(time.monotonic())

    await watcher.subscribe(CHANGES_SUBJECT, cb=on_notice)
    await watcher.flush()  # subscribed before the first notice
    materializer = await Materializer(settings).__aenter__()
    try:
        await _ingest_through_a_failover(cluster, cluster_js, materializer, gateway.url, batches)
    finally:
        started = time.monotonic()
        await materializer.close()
        # Closing drains the NATS connections (nats-py waits up to 30 s for each).
        print(f"materializer closed in {time.monotonic() - started:.1f} s")
        await watcher.close()


async def _ingest_through_a_failover(
    cluster: LocalNatsCluster,
    cluster_js: JetStreamContext,
    materializer: Materializer,
    gateway_url: str,
    batches: list[float],
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        leader = await stream_leader(cluster_js)
        assert materializer.nc is not None and materializer.nc.connected_url is not None
        killed_at = 0.0
        for index in range(EVENTS):
            await publish_until_acked(cluster_js, order_event())
            if index == EVENTS // 3:
                await materializer.wait_for_sequence(index + 1)
                # The node holding the stream's leader and, when they differ, the one
                # the materializer is connected to are both candidates; the leader is
                # the harder case (a new RAFT election before anything is stored).
                cluster.node(leader).kill()
                killed_at = time.monotonic()
        stream = await cluster_js.stream_info(STREAM_NAME)
        assert stream.state.messages == EVENTS  # each retried publish stored once
        await materializer.wait_for_sequence(stream.state.last_seq, timeout=60)
        stats = materializer.stats()
        assert stats["events_applied"] == EVENTS
        assert stats["events_duplicate"] == 0
        assert await stream_leader(cluster_js) != leader
        # The gateway follows by itself: its answer is the materializer's whole count.
        await until(lambda: orders_seen(http), timeout=30, interval=0.2)
        assert await orders_seen(http) == EVENTS
        after = [t for t in batches if t >= killed_at]
        assert after, "no batch was announced after the node died"
        pause = after[0] - killed_at
        print(f"first batch {pause:.2f} s after the kill")  # measured in bench/bench_cluster.py
