"""Gateway benchmarks: query latency and throughput, change-to-subscriber latency, fan-out.

Run: ``.venv/bin/python -m bench.bench_gateway [--only http,live,fanout]``. Each part starts
its own nats-server, materializer and gateway processes (one uvicorn worker) and reports
figures measured in the same run, next to a baseline of the same run where one exists.
The live part publishes and times the change notices in a process of its own
(``bench.live_probe``) and reports where the machine's CPU went meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.gateway_stack import (
    Board,
    RawWebSocket,
    Stack,
    Watcher,
    bare_server,
    http_load,
    percentile,
    post_request,
    running_stack,
    watch,
)
from pulse_bi.contract import CHANGES_SUBJECT, STREAM_NAME, notice_decoder
from pulse_bi.simulator import generate, publish
from pulse_bi.streams import ensure_stream
from tests.cluster.conftest import order_event as cluster_order

SALES_FIELDS = "hour orders grossRevenue netRevenue units averageOrderValue"


def machine() -> str:
    """One line describing this machine."""
    return (
        f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


def hour_start(moment: dt.datetime | None = None) -> dt.datetime:
    """Start of the UTC hour."""
    return (moment or dt.datetime.now(dt.UTC)).replace(minute=0, second=0, microsecond=0)


async def prefill(stack: Stack, count: int) -> int:
    """Publish simulated events over the last 48 h and wait until the gateway shows them."""
    assert stack.nats is not None
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    await ensure_stream(js)
    await publish(nc, generate(7, count).messages)
    last = int((await js.stream_info(STREAM_NAME)).state.last_seq)
    await nc.drain()
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = {"query": "{ pipeline { lastSequence } }"}
            reply = (await http.post("/graphql", json=body)).json()
            if (reply.get("data") or {}).get("pipeline", {}).get("lastSequence") == last:
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(2.5)  # one heartbeat: the gateway trusts its caches from now on
    return last


def order_event(now: dt.datetime) -> tuple[str, bytes]:
    """An order.created CloudEvent of the current hour: its id and JSON."""
    event = cluster_order(total="12.34", time_=now.isoformat())
    return event["id"], json.dumps(event).encode()


# -- HTTP ---------------------------------------------------------------------------------


async def bench_http(seconds: float, events: int) -> dict[str, Any]:
    """salesByHour over 24 h: one client and 32 clients, next to a bare Starlette endpoint.

    Then again with both caches off, so every request runs the named query in DuckDB
    (what a dashboard sees while events arrive faster than it refreshes).
    """
    results: dict[str, Any] = {}
    with running_stack() as stack:
        await prefill(stack, events)
        body, reply = _sales_request(stack)
        results["rows"] = len(reply.json()["data"]["salesByHour"])
        results["response_bytes"] = len(reply.content)
        results["gateway"] = await _load_pair(stack.gateway_port, body, seconds)
        with (
            tempfile.TemporaryDirectory() as tmp,
            bare_server(reply.content, "application/json", Path(tmp)) as port,
        ):
            results["bare_starlette"] = await _load_pair(port, body, seconds)
    uncached = {"GATEWAY_CACHE_ENTRIES": "0", "GATEWAY_RESPONSE_CACHE_ENTRIES": "0"}
    with running_stack(uncached) as stack:
        await prefill(stack, events)
        body, _ = _sales_request(stack)
        results["gateway_uncached"] = await _load_pair(stack.gateway_port, body, seconds)
    return results


def _sales_request(stack: Stack) -> tuple[bytes, httpx.Response]:
    """The body Grafana would POST for 24 hourly rows, and the gateway's answer to it."""
    end = hour_start() + dt.timedelta(hours=1)
    query = (
        f'{{ salesByHour(from: "{(end - dt.timedelta(hours=24)).isoformat()}", '
        f'to: "{end.isoformat()}") {{ {SALES_FIELDS} }} }}'
    )
    body = json.dumps({"query": query, "variables": None}).encode()
    reply = httpx.post(
        stack.gateway_url + "/graphql", content=body, headers={"content-type": "application/json"}
    )
    return body, reply


async def _load_pair(port: int, body: bytes, seconds: float) -> dict[str, Any]:
    request = post_request(port, body)
    await http_load(port, request, 4, 1.0)  # warm up
    one, errors_one = await http_load(port, request, 1, seconds)
    many, errors_many = await http_load(port, request, 32, seconds)
    return {
        "one_client": {
            "p50_ms": round(percentile(one, 50) * 1000, 3),
            "p99_ms": round(percentile(one, 99) * 1000, 3),
            "req_s": round(len(one) / seconds),
            "errors": errors_one,
        },
        "32_clients": {
            "req_s": round(len(many) / seconds),
            "p50_ms": round(percentile(many, 50) * 1000, 3),
            "p99_ms": round(percentile(many, 99) * 1000, 3),
            "errors": errors_many,
        },
    }


# -- subscriptions ------------------------------------------------------------------------


async def subscribe(port: int, query: str) -> RawWebSocket:
    """A graphql-transport-ws connection with one subscription (first result not yet read)."""
    ws = await RawWebSocket.connect(port)
    ws.send('{"type":"connection_init"}')
    await ws.recv()
    ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
    return ws


def orders_of(message: str | bytes) -> int | None:
    """`orders` of a salesSummary result frame, None for other frames."""
    parsed = json.loads(message)
    if parsed.get("type") != "next":
        return None
    return int(parsed["payload"]["data"]["salesSummary"]["orders"])


#: Materializer metrics the live part reports, as their change over the publishing.
_MATERIALIZER_COUNTERS = (
    "pulse_materializer_batch_seconds_count",
    "pulse_materializer_batch_seconds_sum",
    "pulse_materializer_batch_events_sum",
    "pulse_materializer_query_seconds_count",
    "pulse_materializer_query_seconds_sum",
    "pulse_materializer_checkpoint_seconds_count",
    "pulse_materializer_checkpoint_seconds_sum",
    "pulse_materializer_checkpoint_retries_total",
    "pulse_materializer_fold_seconds_count",
    "pulse_materializer_fold_seconds_sum",
)


async def materializer_counters(stack: Stack) -> dict[str, float]:
    """``_MATERIALIZER_COUNTERS`` from the materializer's /metrics, summed over labels."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(stack.materializer_url + "/metrics")).text
    totals = dict.fromkeys(_MATERIALIZER_COUNTERS, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the machine so far, every core."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle, sum(times)


async def bench_live(
    rate: int, seconds: float, subscribers: int, publish: str = "core"
) -> dict[str, Any]:
    """Event published -> change notice, and -> subscriber has a result that includes it,
    at `rate` events/s; where the machine's CPU went meanwhile.

    The events are published and the change notices timed by ``bench.live_probe``, a
    process of its own; this one holds the subscribers' WebSockets. The notices this
    process sees as well are reported apart (``notice_in_subscribers_process_*``): the
    difference is the time the subscribers' frames held its event loop.
    """
    if "CLOCK_MONOTONIC" not in time.get_clock_info("perf_counter").implementation:
        raise SystemExit("the live part compares perf_counter across processes: Linux only")
    with running_stack() as stack:
        await prefill(stack, 2000)
        assert stack.nats is not None and stack.nats.process is not None
        start = hour_start()
        # Four distinct live queries (windows ending 1-4 h ahead) shared by the subscribers.
        queries = [
            f'subscription {{ salesSummary(from: "{start.isoformat()}", '
            f'to: "{(start + dt.timedelta(hours=h)).isoformat()}") {{ orders netRevenue }} }}'
            for h in (1, 2, 3, 4)
        ]
        sockets = [await subscribe(stack.gateway_port, queries[i % 4]) for i in range(subscribers)]
        baselines = [orders_of(await ws.recv()) or 0 for ws in sockets]
        total = int(rate * seconds)
        # Per subscriber: (events its result includes, when it arrived).
        arrivals: list[list[tuple[int, float]]] = [[] for _ in sockets]

        async def watch(ws: Any, baseline: int, seen: list[tuple[int, float]]) -> None:
            count = 0
            while count < total:
                parsed = json.loads(await ws.recv())
                now = time.perf_counter()
                if parsed.get("type") == "ping":
                    # A client that never answers is closed (4408) after two keep-alives.
                    ws.send('{"type":"pong"}')
                    continue
                if parsed.get("type") != "next":
                    continue
                count = int(parsed["payload"]["data"]["salesSummary"]["orders"]) - baseline
                seen.append((count, now))

        watchers = [
            asyncio.create_task(watch(ws, b, seen))
            for ws, b, seen in zip(sockets, baselines, arrivals, strict=True)
        ]
        nc = await nats.connect(stack.nats.url)
        loop_notices: list[tuple[int, float]] = []

        async def on_notice(msg: Any) -> None:
            notice = notice_decoder.decode(msg.data)
            if notice.kind == "change":
                loop_notices.append((notice.version, time.perf_counter()))

        await nc.subscribe(CHANGES_SUBJECT, cb=on_notice)
        processes = {
            "materializer": psutil.Process(stack.pid("materializer")),
            "gateway": psutil.Process(stack.pid("gateway")),
            "nats_server": psutil.Process(stack.nats.process.pid),
            "subscribers": psutil.Process(),
        }
        cpu_before = {name: _cpu_seconds(p) for name, p in processes.items()}
        busy_before = _machine_busy()
        counters_before = await materializer_counters(stack)
        probe = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.live_probe",
            stack.nats.url,
            str(rate),
            str(total),
            f"--publish={publish}",
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await probe.communicate()
        if probe.returncode != 0:
            raise RuntimeError(f"bench.live_probe failed ({probe.returncode})")
        cpu_after = {name: _cpu_seconds(p) for name, p in processes.items()}
        busy_after = _machine_busy()
        counters_after = await materializer_counters(stack)
        measured = json.loads(output)
        done, pending = await asyncio.wait(watchers, timeout=30)
        for task in pending:
            task.cancel()
        # A watcher whose socket the gateway closed (a slow client, 1008) ended early.
        dropped = [task for task in done if task.exception() is not None]
        await nc.drain()
        for ws in sockets:
            ws.close()
    published: list[float] = measured["published"]
    notice_latency = _notice_latencies(measured["notices"], measured["sequences"], published)
    loop_latency = _notice_latencies(loop_notices, measured["sequences"], published)
    latencies = [t for seen in arrivals for t in _arrival_latencies(seen, published)]
    window = measured["seconds"]
    wall = busy_after[1] - busy_before[1]
    delta = {k: counters_after[k] - counters_before[k] for k in counters_before}
    batches = delta["pulse_materializer_batch_seconds_count"] or 1
    queries_run = delta["pulse_materializer_query_seconds_count"] or 1
    return {
        "events": total,
        "publish": publish,
        "rate_achieved": round(total / window),
        "publish_to_notice_p50_ms": round(percentile(notice_latency, 50) * 1000, 1),
        "publish_to_notice_p99_ms": round(percentile(notice_latency, 99) * 1000, 1),
        "events_without_notice": total - len(notice_latency),
        "notice_in_subscribers_process_p50_ms": round(percentile(loop_latency, 50) * 1000, 1),
        "notice_in_subscribers_process_p99_ms": round(percentile(loop_latency, 99) * 1000, 1),
        "subscribers": subscribers,
        "live_queries": min(len(queries), subscribers),
        "frames_received": sum(len(seen) for seen in arrivals),
        "complete_subscribers": len(done) - len(dropped),
        "dropped_subscribers": len(dropped),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
        # Where the CPU went while the events were published (100 = one core).
        "cpu_percent": {
            **{
                name: round((cpu_after[name] - cpu_before[name]) / window * 100)
                for name in processes
            },
            "publisher": round(measured["cpu_seconds"] / window * 100),
            "machine_busy_of_all_cores": round(
                (busy_after[0] - busy_before[0]) / wall * 100 if wall else 0
            ),
        },
        "materializer": {
            "batches": int(delta["pulse_materializer_batch_seconds_count"]),
            "events_per_batch": round(delta["pulse_materializer_batch_events_sum"] / batches, 1),
            "batch_ms_mean": round(
                delta["pulse_materializer_batch_seconds_sum"] / batches * 1000, 1
            ),
            "named_queries": int(delta["pulse_materializer_query_seconds_count"]),
            "named_query_ms_mean": round(
                delta["pulse_materializer_query_seconds_sum"] / queries_run * 1000, 1
            ),
            "checkpoints": int(delta["pulse_materializer_checkpoint_seconds_count"]),
            "checkpoint_seconds": round(delta["pulse_materializer_checkpoint_seconds_sum"], 3),
            # Refused while a read ran, and tried again (docs/OPERATIONS.md, "Checkpoints").
            "checkpoint_retries": int(delta["pulse_materializer_checkpoint_retries_total"]),
            # Folds of the aggregate deltas after a notice (none counted before 2026-12-03).
            "folds": int(delta["pulse_materializer_fold_seconds_count"]),
            "fold_seconds": round(delta["pulse_materializer_fold_seconds_sum"], 3),
        },
    }


def _arrival_latencies(seen: list[tuple[int, float]], published: list[float]) -> list[float]:
    """Per event, for one subscriber: publish until the first result that includes it
    (``seen``: how many of the published events each result includes, and when it came)."""
    latencies = []
    reached = 0
    for count, now in seen:
        latencies.extend(now - published[index] for index in range(reached, count))
        reached = max(reached, count)
    return latencies


def _notice_latencies(
    notices: list[tuple[int, float]], sequences: list[int], published: list[float]
) -> list[float]:
    """Per event: publish until the first change notice whose version includes it."""
    latencies = []
    position = 0
    for sequence, sent in sorted(zip(sequences, published, strict=True)):
        while position < len(notices) and notices[position][0] < sequence:
            position += 1
        if position < len(notices):
            latencies.append(notices[position][1] - sent)
    return latencies


async def bench_fanout(subscribers: int, rounds: int) -> dict[str, Any]:
    """`subscribers` sockets on one gateway, one change: time until every one has it; RSS."""
    with running_stack({"GATEWAY_WS_KEEPALIVE": "600"}) as stack:
        await prefill(stack, 2000)
        assert stack.nats is not None
        gateway = psutil.Process(stack.pid("gateway"))
        rss_idle = gateway.memory_info().rss
        start = hour_start()
        query = (
            f'subscription {{ salesSummary(from: "{start.isoformat()}", '
            f'to: "{(start + dt.timedelta(hours=1)).isoformat()}") {{ orders netRevenue }} }}'
        )
        board = Board()
        watchers: list[Watcher] = []
        connect_started = time.perf_counter()
        for batch in range(0, subscribers, 250):
            count = min(250, subscribers - batch)
            watchers += await asyncio.gather(
                *(watch(stack.gateway_port, query, board) for _ in range(count))
            )
        connect_s = time.perf_counter() - connect_started
        rss_loaded = gateway.memory_info().rss
        orders = orders_of(watchers[0].first.result()) or 0
        nc = await nats.connect(stack.nats.url)
        reach: list[float] = []
        gateway_cpu: list[float] = []
        for _ in range(rounds):
            orders += 1
            board.expect(f'"orders":{orders},'.encode(), subscribers)
            await asyncio.sleep(0.5)
            cpu = gateway.cpu_times()
            event_id, data = order_event(dt.datetime.now(dt.UTC))
            sent = time.perf_counter()
            await nc.publish("pulse.events.orders.created", data, headers={"Nats-Msg-Id": event_id})
            await nc.flush()
            try:
                await asyncio.wait_for(board.done.wait(), 30)
                reach.append(board.last - sent)
            except TimeoutError:
                reach.append(float("inf"))
            after = gateway.cpu_times()
            gateway_cpu.append(after.user + after.system - cpu.user - cpu.system)
        await nc.drain()
        rss_after = gateway.memory_info().rss
        for watcher in watchers:
            watcher.close()
    return {
        "subscribers": subscribers,
        "connect_and_first_result_s": round(connect_s, 1),
        "all_reached_s": [round(r, 3) for r in reach],
        "median_all_reached_s": round(statistics.median(reach), 3),
        "gateway_cpu_s_per_change": [round(c, 3) for c in gateway_cpu],
        "gateway_rss_mb": {
            "idle": round(rss_idle / 2**20),
            "with_subscribers": round(rss_loaded / 2**20),
            "after_changes": round(rss_after / 2**20),
        },
    }


def bounded(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` from ``low`` to ``high``, or a clear error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:  # also NaN
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    return parse


#: The live part's rate (events/s), length (s) and subscribers, as ``bench.live_probe``
#: and this command accept them.
RATE = bounded(int, 1, 100_000)
LIVE_SECONDS = bounded(float, 0.1, 86_400)
LIVE_SUBSCRIBERS = bounded(int, 1, 10_000)
#: How ``bench.live_probe`` publishes: without waiting for acks, or awaiting each.
PUBLISH = ("core", "acked")


def main() -> None:
    """Run the chosen parts and print their figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="http,live,fanout", help="parts to run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each HTTP load run")
    parser.add_argument("--events", type=int, default=20_000, help="simulated events to prefill")
    parser.add_argument("--rate", type=RATE, default=1000, help="events/s for the live part")
    parser.add_argument("--live-seconds", type=LIVE_SECONDS, default=10.0)
    parser.add_argument("--live-subscribers", type=LIVE_SUBSCRIBERS, default=100)
    parser.add_argument(
        "--publish",
        choices=PUBLISH,
        default=PUBLISH[0],
        help="live part: publish without waiting for acks, or await each (bench.live_probe)",
    )
    parser.add_argument("--subscribers", type=int, default=10_000, help="sockets for fan-out")
    parser.add_argument("--rounds", type=int, default=3, help="changes in the fan-out part")
    args = parser.parse_args()
    run: Any = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    parts = set(args.only.split(","))
    report: dict[str, Any] = {"machine": machine()}
    if "http" in parts:
        report["http"] = run(bench_http(args.seconds, args.events))
        print(json.dumps(report["http"]), flush=True)
    if "live" in parts:
        report["live"] = asyncio.run(
            bench_live(args.rate, args.live_seconds, args.live_subscribers, args.publish)
        )
        print(json.dumps(report["live"]), flush=True)
    if "fanout" in parts:
        report["fanout"] = run(bench_fanout(args.subscribers, args.rounds))
        print(json.dumps(report["fanout"]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
