"""Gateway soak: queries, live subscriptions, socket churn and events flowing, all at once.

Run: ``.venv/bin/python -m bench.bench_soak --seconds 180`` (a mixed soak), or
``.venv/bin/python -m bench.bench_soak --churn 50000`` (connect/subscribe/disconnect
cycles only, RSS after the first 1,000 and at the end). Starts its own nats-server,
materializer and gateway processes (bench.gateway_stack) and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import time
from typing import Any

import nats
import psutil

from bench.bench_gateway import SALES_FIELDS, hour_start, machine, order_event, prefill
from bench.gateway_stack import Board, Stack, http_round_trip, percentile, running_stack
from bench.ws_clients import listen, silent_socket

#: The query mix of the dashboard clients: (name, GraphQL document).
QUERIES: list[tuple[str, str]] = [
    ("salesByHour", f"{{ salesByHour {{ {SALES_FIELDS} }} }}"),
    ("salesSummary", "{ salesSummary { orders netRevenue averageOrderValue } }"),
    ("topProducts", "{ topProducts(limit: 10) { sku units revenue } }"),
    ("lowStock", "{ lowStock { sku warehouse onHand } }"),
    ("arAging", "{ arAging { totalOutstanding buckets { over90 } openInvoices } }"),
    ("overdueInvoices", "{ overdueInvoices(minDaysOverdue: 30) { invoiceId balance } }"),
    ("pipeline", "{ pipeline { lastSequence lag } }"),
]


def _request(port: int, query: str) -> bytes:
    body = json.dumps({"query": query}).encode()
    return (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Tally:
    """Latencies and outcomes of the dashboard clients."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.by_query: collections.Counter[str] = collections.Counter()

    def record(self, name: str, seconds: float, status: bytes, body: bytes) -> None:
        """One answer: its latency, and its error code when it has one."""
        self.latencies.append(seconds)
        self.by_query[name] += 1
        if not status.startswith(b"HTTP/1.1 200"):
            self.errors[f"http {status[9:12].decode()}"] += 1
            return
        if b'"errors"' in body:
            codes = [e.get("extensions", {}).get("code") for e in json.loads(body)["errors"]]
            self.errors[f"{name}: {codes[0]}"] += 1


async def dashboard(port: int, deadline: float, offset: int, tally: Tally) -> None:
    """One keep-alive client asking the query mix in turn, back to back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    requests = [(name, _request(port, query)) for name, query in QUERIES]
    index = offset
    try:
        while time.monotonic() < deadline:
            name, request = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            head, body = await http_round_trip(reader, writer, request)
            tally.record(name, time.perf_counter() - started, head, body)
    finally:
        writer.close()


async def publisher(stack: Stack, rate: int, deadline: float) -> int:
    """Publish `order.created` events at `rate` per second to JetStream; the count sent."""
    assert stack.nats is not None
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    sent = 0
    began = time.monotonic()
    try:
        while time.monotonic() < deadline:
            delay = began + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event_id, data = order_event(dt.datetime.now(dt.UTC))
            await js.publish("pulse.events.orders.created", data, headers={"Nats-Msg-Id": event_id})
            sent += 1
    finally:
        await nc.drain()
    return sent


def _subscription(hours: int) -> str:
    start = hour_start()
    return (
        f'subscription {{ salesSummary(from: "{start.isoformat()}", '
        f'to: "{(start + dt.timedelta(hours=hours)).isoformat()}") {{ orders netRevenue }} }}'
    )


async def churner(port: int, deadline: float | None, limit: int | None) -> int:
    """Connect, subscribe, take the first result, disconnect; the cycles completed."""
    cycles = 0
    board = Board()
    query = _subscription(1)
    while (deadline is None or time.monotonic() < deadline) and (limit is None or cycles < limit):
        watcher = await listen(port, query, board)
        watcher.close()
        cycles += 1
    return cycles


async def sample_rss(processes: dict[str, psutil.Process], every: float, out: list[Any]) -> None:
    """Append `[seconds, {name: MB}]` every `every` seconds until cancelled."""
    began = time.monotonic()
    while True:
        out.append(
            [
                round(time.monotonic() - began),
                {n: round(p.memory_info().rss / 2**20) for n, p in processes.items()},
            ]
        )
        await asyncio.sleep(every)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """The mixed soak."""
    with running_stack() as stack:
        await prefill(stack, args.events)
        processes = {n: psutil.Process(stack.pid(n)) for n in ("gateway", "materializer")}
        rss: list[Any] = []
        sampler = asyncio.create_task(sample_rss(processes, args.sample, rss))
        board = Board()
        watchers = [
            await listen(stack.gateway_port, _subscription(1 + i % 4), board)
            for i in range(args.subscribers)
        ]
        frames = [0]
        seen = board.seen

        def count(payload: bytes) -> None:
            frames[0] += 1
            seen(payload)

        board.seen = count  # type: ignore[method-assign]
        silent = [
            await silent_socket(stack.gateway_port, _subscription(1 + i % 4))
            for i in range(args.silent)
        ]
        tally = Tally()
        began = time.monotonic()
        deadline = began + args.seconds
        tasks = [
            asyncio.create_task(dashboard(stack.gateway_port, deadline, i, tally))
            for i in range(args.clients)
        ]
        churn = [
            asyncio.create_task(churner(stack.gateway_port, deadline, None))
            for _ in range(args.churners)
        ]
        sent = await publisher(stack, args.rate, deadline)
        await asyncio.gather(*tasks)
        cycles = sum(await asyncio.gather(*churn))
        elapsed = time.monotonic() - began
        sampler.cancel()
        stats = _stats(stack)
        for watcher in watchers:
            watcher.close()
        for writer in silent:
            writer.close()
        timings = await _timings(stack)
    latencies = tally.latencies
    return {
        "seconds": round(elapsed),
        "events_published": sent,
        "events_per_s": round(sent / elapsed),
        "clients": args.clients,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "errors": sum(tally.errors.values()),
        "errors_by_code": dict(tally.errors),
        "subscribers": args.subscribers,
        "live_frames": frames[0],
        "churn_cycles": cycles,
        "silent_sockets": args.silent,
        "gateway_stats": stats,
        "timings_ms": timings,
        "rss_mb": rss,
    }


def _histogram(text: str, name: str) -> dict[str, float]:
    """Count, mean and p50/p99 (bucket upper bounds, ms) of a Prometheus histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: collections.defaultdict[float, float] = collections.defaultdict(float)
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name + "_bucket":
                buckets[float(sample.labels["le"])] += sample.value
            elif sample.name == name + "_sum":
                total += sample.value
            elif sample.name == name + "_count":
                count += sample.value
    result = {"count": count, "mean": round(total / count * 1000, 1) if count else 0.0}
    for p in (50, 99):
        bound = next((le for le in sorted(buckets) if buckets[le] >= count * p / 100), 0.0)
        result[f"p{p}_le"] = round(bound * 1000, 1)
    return result


async def _timings(stack: Stack) -> dict[str, Any]:
    """Where the time of a named query goes: gateway round trip, materializer, batches."""
    import httpx

    from materializer.service import METRICS_SUBJECT

    assert stack.nats is not None
    gateway = httpx.get(stack.gateway_url + "/metrics", timeout=5).text
    nc = await nats.connect(stack.nats.url)
    materializer = (await nc.request(METRICS_SUBJECT, b"", timeout=5)).data.decode()
    await nc.drain()
    return {
        "gateway_upstream_round_trip": _histogram(gateway, "gateway_upstream_request_seconds"),
        "materializer_query": _histogram(materializer, "pulse_materializer_query_seconds"),
        "materializer_batch": _histogram(materializer, "pulse_materializer_batch_seconds"),
    }


def _stats(stack: Stack) -> dict[str, Any]:
    import httpx

    body = httpx.get(stack.gateway_url + "/stats", timeout=5).json()
    figures = {k: body[k] for k in ("websocket_connections", "live", "query_cache")}
    metrics = httpx.get(stack.gateway_url + "/metrics", timeout=5).text
    for line in metrics.splitlines():
        if line.startswith(("gateway_ws_slow_clients_dropped_total", "gateway_upstream_retries")):
            name, value = line.rsplit(" ", 1)
            figures[name] = float(value)
    return figures


async def churn_only(cycles: int, concurrency: int) -> dict[str, Any]:
    """`cycles` connect/subscribe/disconnect cycles; gateway RSS along the way.

    The clients offer permessage-deflate like browsers (declined on default settings).
    """
    with running_stack() as stack:
        await prefill(stack, 2000)
        gateway = psutil.Process(stack.pid("gateway"))
        idle = gateway.memory_info().rss
        points: list[tuple[int, int]] = []
        done = 0
        began = time.monotonic()
        while done < cycles:
            step = min(1000, cycles - done)
            share = step // concurrency
            await asyncio.gather(
                *(churner(stack.gateway_port, None, share) for _ in range(concurrency))
            )
            done += share * concurrency
            points.append((done, round(gateway.memory_info().rss / 2**20, 1)))
        elapsed = time.monotonic() - began
        await asyncio.sleep(1)
        final = gateway.memory_info().rss
        stats = _stats(stack)
    after_first = points[0][1]
    return {
        "cycles": done,
        "seconds": round(elapsed),
        "cycles_per_s": round(done / elapsed),
        "rss_idle_mb": round(idle / 2**20, 1),
        "rss_after_first_1000_mb": after_first,
        "rss_end_mb": round(final / 2**20, 1),
        "growth_vs_first_1000": f"{(final / 2**20 / after_first - 1) * 100:+.1f} %",
        "rss_every_1000_mb": points[:: max(1, len(points) // 10)],
        "gateway_stats": stats,
    }


def main() -> None:
    """Run the soak (or the churn-only run) and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the soak")
    parser.add_argument("--rate", type=int, default=200, help="events/s published")
    parser.add_argument("--clients", type=int, default=16, help="concurrent query clients")
    parser.add_argument("--subscribers", type=int, default=100, help="long-lived sockets")
    parser.add_argument("--churners", type=int, default=2, help="sockets churning at once")
    parser.add_argument(
        "--silent", type=int, default=5, help="sockets that subscribe and never read"
    )
    parser.add_argument("--events", type=int, default=20_000, help="events prefilled")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--churn", type=int, default=0, help="only churn this many cycles")
    parser.add_argument("--churn-concurrency", type=int, default=10)
    args = parser.parse_args()
    import uvloop

    if args.churn:
        report = uvloop.run(churn_only(args.churn, args.churn_concurrency))
    else:
        report = uvloop.run(soak(args))
    rss = report.pop("rss_mb", None)
    print(json.dumps({"machine": machine(), **report}, indent=2))
    if rss is not None:
        print('"rss_mb" (seconds, MB):')
        for point in rss:
            print(json.dumps(point))


if __name__ == "__main__":
    main()
