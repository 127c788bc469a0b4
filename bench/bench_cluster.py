"""Scale-out benchmark on a local 3-node JetStream cluster (docs/SCALING.md).

Run: ``.venv/bin/python -m bench.bench_cluster [--events 20000] [--seconds 20]
[--rate 20] [--outage 10000]``. Each figure is measured against a baseline of the same
run, since the machine is shared:

1. ingest: publish rate and materializer apply rate on the cluster (stream R3) vs a single
   server (stream R1);
2. event → subscriber latency (p50/p99/max) through the gateway's live query, while the
   stream leader is killed mid-run, vs the same run on the cluster with no kill;
3. the failover pause: from the kill to the first batch applied after it, and the longest
   wait a publisher had for an ack;
4. many sites: catch-up rate of a site's events after a 10k-event outage of its link, vs
   the central materializer applying the same number published on the hub directly.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import psutil
import websockets
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ExternalStream, StreamSource

from gateway.settings import Settings as GatewaySettings
from materializer.app import Materializer
from materializer.settings import Settings
from pulse_bi.contract import CHANGES_SUBJECT, STREAM_NAME, notice_decoder
from pulse_bi.natscluster import LocalNatsCluster, hub_server, site_server
from pulse_bi.natsserver import LocalNatsServer, free_port
from pulse_bi.simulator import generate, publish
from pulse_bi.streams import ensure_stream, stream_config
from tests.cluster.balancer import RoundRobin
from tests.cluster.conftest import order_event
from tests.conftest import local_materializer
from tests.gateway.conftest import Server

WINDOW = 'from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z"'


def machine() -> str:
    return (
        f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


def settings_for(url: str, path: Path, **extra: Any) -> Settings:
    return local_materializer(url, path, **extra)


def order(site: str | None = None) -> tuple[str, bytes, dict[str, str]]:
    event = order_event()
    headers = {"Nats-Msg-Id": event["id"]}
    if site:
        headers["Pulse-Site"] = site
    return "pulse.events.orders.created", json.dumps(event).encode(), headers


async def ready_stream(js: JetStreamContext, replicas: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await ensure_stream(js, replicas=replicas)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


# -- 1. ingest -----------------------------------------------------------------------


async def ingest(urls: list[str], replicas: int, events: int, tmp: Path) -> tuple[float, float]:
    """(publish events/s, apply events/s) of ``events`` simulated events."""
    nc = await nats.connect(servers=urls)
    js = nc.jetstream()
    await ready_stream(js, replicas)
    scenario = generate(11, events)
    started = time.perf_counter()
    await publish(nc, scenario.messages, ack_every=16)
    published = time.perf_counter() - started
    last = int((await js.stream_info(STREAM_NAME)).state.last_seq)
    await nc.drain()
    started = time.perf_counter()
    async with Materializer(settings_for(",".join(urls), tmp / "ingest.duckdb")) as m:
        await m.wait_for_sequence(last, timeout=600)
    applied = time.perf_counter() - started
    return last / published, last / applied


# -- 2 and 3. latency with a node killed ------------------------------------------------


async def latency(
    cluster: LocalNatsCluster, seconds: float, rate: float, kill: bool, tmp: Path
) -> dict[str, float]:
    nc = await nats.connect(
        servers=cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    js = nc.jetstream()
    await ready_stream(js, 3)
    base = int((await js.stream_info(STREAM_NAME)).state.messages)
    gateway = Server(
        GatewaySettings(nats_url=cluster.url, host="127.0.0.1", port=free_port())
    ).start()
    batches: list[float] = []

    async def on_notice(msg: Msg) -> None:
        if notice_decoder.decode(msg.data).kind != "heartbeat":
            batches.append(time.monotonic())

    await nc.subscribe(CHANGES_SUBJECT, cb=on_notice)
    name = "kill" if kill else "steady"
    async with Materializer(settings_for(cluster.url, tmp / f"{name}.duckdb")) as m:
        await m.wait_for_sequence(base, timeout=600)
        ws = await websockets.connect(gateway.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
        await ws.send('{"type": "connection_init"}')
        await ws.recv()
        live = f"subscription {{ salesSummary({WINDOW}) {{ orders }} }}"
        await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"query": live}}))
        frames: list[tuple[float, int]] = []

        async def read() -> None:
            async for text in ws:
                message = json.loads(text)
                if message.get("type") == "next":
                    orders = message["payload"]["data"]["salesSummary"]["orders"]
                    frames.append((time.monotonic(), int(orders)))

        reader = asyncio.create_task(read())
        await asyncio.sleep(1)
        first = frames[-1][1] if frames else 0
        count = int(seconds * rate)
        start = time.monotonic()
        scheduled = [start + i / rate for i in range(count)]
        killed_at = 0.0
        longest_ack = 0.0
        for at in scheduled:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if kill and not killed_at and at - start >= seconds / 3:
                info = await js.stream_info(STREAM_NAME)
                assert info.cluster is not None and info.cluster.leader is not None
                cluster.node(info.cluster.leader).kill()
                killed_at = time.monotonic()
            subject, payload, headers = order()
            asked = time.monotonic()
            while True:
                try:
                    await js.publish(subject, payload, headers=headers, timeout=1.0)
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            longest_ack = max(longest_ack, time.monotonic() - asked)
        deadline = time.monotonic() + 60
        while (not frames or frames[-1][1] < first + count) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        reader.cancel()
        await ws.close()
    gateway.stop()
    await nc.drain()
    delays = []
    for index, at in enumerate(scheduled):
        seen = next(t for t, orders in frames if orders >= first + index + 1)
        delays.append(seen - at)
    delays.sort()
    result = {
        "p50_ms": 1000 * statistics.median(delays),
        "p99_ms": 1000 * delays[int(0.99 * (len(delays) - 1))],
        "max_ms": 1000 * delays[-1],
        "longest_publish_s": longest_ack,
    }
    # The pause: the longest time without a committed batch while events kept coming.
    during = [t for t in batches if start <= t <= scheduled[-1] + 1]
    result["longest_batch_gap_s"] = max(
        (b - a for a, b in itertools.pairwise(during)), default=float("nan")
    )
    return result


# -- 4. many sites -------------------------------------------------------------------


async def publish_many(js: JetStreamContext, count: int, site: str | None) -> None:
    for start in range(0, count, 500):
        await asyncio.gather(
            *(
                js.publish(s, p, headers=h, timeout=10)
                for s, p, h in (order(site) for _ in range(min(500, count - start)))
            )
        )


async def sites(outage: int, tmp: Path) -> tuple[float, float, float]:
    """(seconds from the link's return to the first sourced event, catch-up events/s from
    then until all are applied, direct apply events/s baseline)."""
    leaf_port, link_port = free_port(), free_port()
    hub = hub_server(tmp, leaf_port, advertise=f"127.0.0.1:{link_port}").start()
    link = await RoundRobin([leaf_port], port=link_port).start()
    site = site_server(tmp, "wh1", f"nats-leaf://127.0.0.1:{link_port}").start()
    try:
        site_nc, hub_nc = await nats.connect(site.url), await nats.connect(hub.url)
        site_js, hub_js = site_nc.jetstream(), hub_nc.jetstream()
        await ensure_stream(site_js)
        config = stream_config()
        config.sources = [
            StreamSource(name=STREAM_NAME, external=ExternalStream(api="$JS.wh1.API"))
        ]
        await hub_js.add_stream(config)
        async with Materializer(settings_for(hub.url, tmp / "central.duckdb")) as central:
            await publish_many(site_js, 10, "wh1")
            await central.wait_for_sequence(10, timeout=60)
            await link.stop()
            await publish_many(site_js, outage, "wh1")
            await link.start()
            back = time.perf_counter()
            while int((await hub_js.stream_info(STREAM_NAME)).state.messages) <= 10:
                await asyncio.sleep(0.05)
            resumed = time.perf_counter()
            await central.wait_for_sequence(10 + outage, timeout=600)
            catch_up = outage / (time.perf_counter() - resumed)
            # Baseline: the same number published on the hub itself, applied by the same
            # materializer (nothing in between).
            await link.stop()
            await publish_many(hub_js, outage, None)
            started = time.perf_counter()
            await central.wait_for_sequence(10 + 2 * outage, timeout=600)
            direct = outage / (time.perf_counter() - started)
            assert central.stats()["events_duplicate"] == 0
        await site_nc.close()
        await hub_nc.close()
        return resumed - back, catch_up, direct
    finally:
        await link.stop()
        site.stop()
        hub.stop()


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}; load average at start {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        single = LocalNatsServer(store_dir=tmp / "single").start()
        try:
            one = await ingest([single.url], 1, args.events, tmp / "one")
        finally:
            single.stop()
        cluster = LocalNatsCluster(store_dir=tmp / "cluster").start()
        try:
            three = await ingest(cluster.urls, 3, args.events, tmp / "three")
            print(
                f"ingest {args.events} events, publish/s: single {one[0]:.0f}, "
                f"cluster R3 {three[0]:.0f} ({three[0] / one[0]:.2f}x)"
            )
            print(
                f"ingest apply/s: single {one[1]:.0f}, cluster R3 {three[1]:.0f} "
                f"({three[1] / one[1]:.2f}x)"
            )
            steady = await latency(cluster, args.seconds, args.rate, False, tmp)
            killed = await latency(cluster, args.seconds, args.rate, True, tmp)
        finally:
            cluster.stop()
        for label, figures in (("no kill", steady), ("leader killed", killed)):
            print(
                f"event -> subscriber, {label}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
            )
        resume, catch_up, direct = await sites(args.outage, tmp / "sites")
        print(
            f"site outage of {args.outage} events: sourcing resumed {resume:.1f} s after the "
            f"link returned, then caught up at {catch_up:.0f} events/s; direct on the hub "
            f"{direct:.0f} events/s ({catch_up / direct:.2f}x)"
        )
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--outage", type=int, default=10_000)
    asyncio.run(main(parser.parse_args()))
