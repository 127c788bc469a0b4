"""Many sites: each warehouse has its own nats-server and stream; the central stream
sources it over a leaf link. A site offline during 10k events keeps taking them, and the
central materializer applies every one exactly once after the link returns, and answers
the site-filtered queries with exactly that site's numbers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import ExternalStream, StreamSource

from materializer.app import Materializer
from pulse_bi.contract import STREAM_NAME
from pulse_bi.natscluster import ConfiguredServer, hub_server, site_server
from pulse_bi.natsserver import free_port
from pulse_bi.streams import ensure_stream, stream_config
from tests.cluster.balancer import RoundRobin
from tests.cluster.conftest import order_event
from tests.conftest import local_materializer, publish_events

pytestmark = pytest.mark.slow

SITE = "wh1"
SITE_HEADER = "Pulse-Site"
OUTAGE_EVENTS = 10_000
#: Orders published at the hub itself: the central site (no header), other figures.
CENTRAL_EVENTS = 20
ALL_TIME = {"from": "2000-01-01T00:00:00+00:00", "to": "2100-01-01T00:00:00+00:00"}


async def publish_many(js: JetStreamContext, count: int, window: int = 500) -> int:
    """Publish ``count`` orders at a site, ``window`` acks awaited at a time."""
    last = 0
    for start in range(0, count, window):
        events = [order_event() for _ in range(min(window, count - start))]
        acks = await asyncio.gather(
            *(
                js.publish(
                    "pulse.events.orders.created",
                    json.dumps(event).encode(),
                    headers={"Nats-Msg-Id": event["id"], SITE_HEADER: SITE},
                    timeout=10,
                )
                for event in events
            )
        )
        last = max(ack.seq for ack in acks)
    return last


async def until_value(probe: Any, expected: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{value!r} != {expected!r} after {timeout}s")
        await asyncio.sleep(0.1)


@pytest.fixture
async def sites(
    tmp_path: Path,
) -> AsyncIterator[tuple[ConfiguredServer, ConfiguredServer, RoundRobin]]:
    """A hub, one site, and the site's leaf link running through a cuttable relay."""
    leaf_port, link_port = free_port(), free_port()
    hub = hub_server(tmp_path, leaf_port, advertise=f"127.0.0.1:{link_port}").start()
    link = await RoundRobin([leaf_port], port=link_port).start()
    site = site_server(tmp_path, SITE, f"nats-leaf://127.0.0.1:{link.port}").start()
    try:
        yield hub, site, link
    finally:
        await link.stop()
        site.stop()
        hub.stop()


async def test_a_site_offline_during_10k_events_catches_up_exactly_once(
    sites: tuple[ConfiguredServer, ConfiguredServer, RoundRobin], tmp_path: Path
) -> None:
    hub, site, link = sites
    site_nc = await nats.connect(site.url)
    hub_nc = await nats.connect(hub.url)
    site_js, hub_js = site_nc.jetstream(), hub_nc.jetstream()
    await ensure_stream(site_js)
    config = stream_config()
    config.sources = [
        StreamSource(name=STREAM_NAME, external=ExternalStream(api=f"$JS.{SITE}.API"))
    ]
    await hub_js.add_stream(config)
    settings = local_materializer(hub.url, tmp_path / "central.duckdb")

    async def central_messages() -> int:
        return int((await hub_js.stream_info(STREAM_NAME)).state.messages)

    try:
        async with Materializer(settings) as central:
            await publish_many(site_js, 100)
            await until_value(central_messages, 100, timeout=30)
            await central.wait_for_sequence(100)
            central_orders = [order_event("3.00", 2) for _ in range(CENTRAL_EVENTS)]
            await publish_events(hub_js, *central_orders)
            before = 100 + CENTRAL_EVENTS
            await central.wait_for_sequence(before)

            await link.stop()  # the site's link goes down
            started = time.monotonic()
            site_last = await publish_many(site_js, OUTAGE_EVENTS)
            assert site_last == 100 + OUTAGE_EVENTS  # the site kept taking events
            published = time.monotonic() - started
            assert await central_messages() == before  # nothing crossed the cut link

            await link.start()  # back: the hub's source consumer resumes where it was
            back = time.monotonic()
            await until_value(central_messages, before + OUTAGE_EVENTS, timeout=90)
            await central.wait_for_sequence(before + OUTAGE_EVENTS, timeout=90)
            caught_up = time.monotonic() - back
            stats = central.stats()
            assert stats["events_applied"] == before + OUTAGE_EVENTS
            assert stats["events_duplicate"] == 0
            assert stats["events_rejected"] == 0
            # The site travels with each event, in a header sourcing keeps.
            message = await hub_js.get_msg(STREAM_NAME, before + OUTAGE_EVENTS)
            assert message.headers is not None and message.headers[SITE_HEADER] == SITE
            # Each site's share is exactly its own events: 10.00 and 1 unit per site order,
            # 3.00 and 2 units per central one; no site given sums them.
            store = central.store
            assert store is not None
            site_orders = 100 + OUTAGE_EVENTS

            def figures(**site: str) -> tuple[int, str, int]:
                row = store.query("sales_summary", {**ALL_TIME, **site}).wire
                return row["orders"], row["gross_revenue"], row["units"]

            assert figures(site=SITE) == (site_orders, f"{10 * site_orders}.00", site_orders)
            assert figures(site="") == (
                CENTRAL_EVENTS,
                f"{3 * CENTRAL_EVENTS}.00",
                2 * CENTRAL_EVENTS,
            )
            assert figures() == (
                site_orders + CENTRAL_EVENTS,
                f"{10 * site_orders + 3 * CENTRAL_EVENTS}.00",
                site_orders + 2 * CENTRAL_EVENTS,
            )
            by_hour = store.query("sales_by_hour", {**ALL_TIME, "site": SITE}).wire
            assert sum(row["orders"] for row in by_hour) == site_orders
            print(
                f"outage: {OUTAGE_EVENTS} events published at the site in {published:.1f} s, "
                f"central caught up in {caught_up:.1f} s"
            )
    finally:
        await site_nc.close()
        await hub_nc.close()
