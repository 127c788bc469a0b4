"""Alert latency: from publishing the event that crosses a threshold to the webhook POST.

A real nats-server, the materializer and a gateway with a low-stock rule run in this
process; a stdlib HTTP server records when each notification arrives. Each round
publishes a stock movement that takes one SKU below (then back above) its reorder point,
so every event is one transition. The baseline, measured on the same events, is the time
to the change notice the materializer publishes after applying it (what any live update
waits for); the difference is the alert engine's evaluation and delivery.

    .venv/bin/python -m bench.bench_alerts [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nats

from gateway.app import create_app, state
from gateway.settings import Settings
from materializer.app import Materializer
from pulse_bi.contract import CHANGES_SUBJECT
from pulse_bi.natsserver import LocalNatsServer, free_port
from pulse_bi.streams import ensure_stream
from tests.conftest import local_materializer


def event(event_type: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": uuid.uuid4().hex,
            "source": "/bench",
            "type": event_type,
            "time": "2026-11-25T10:04:05Z",
            "datacontenttype": "application/json",
            "data": data,
        }
    ).encode()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    arrivals: list[float] = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            arrivals.append(time.perf_counter())
            arrived.set()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    rules = work / "rules.yaml"
    rules.write_text(
        f"""
receivers: {{hook: {{type: webhook, url: "http://127.0.0.1:{receiver.server_address[1]}/"}}}}
defaults: {{receivers: [hook], group_wait: 0}}
rules: [{{name: low, kind: low_stock, warehouse: WH-1}}]
"""
    )
    server = LocalNatsServer(store_dir=work / "js").start()
    msettings = local_materializer(server.url, work / "bench.duckdb", batch_max_wait_ms=5)
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await ensure_stream(js)
    notices: list[float] = []
    notice_seen = asyncio.Event()

    async def on_notice(msg: Any) -> None:
        if b'"heartbeat"' not in msg.data:
            notices.append(time.perf_counter())
            notice_seen.set()

    await nc.subscribe(CHANGES_SUBJECT, cb=on_notice)
    alert_ms: list[float] = []
    notice_ms: list[float] = []
    try:
        async with Materializer(msettings):
            app = create_app(
                Settings(nats_url=server.url, port=free_port(), alert_rules=str(rules))
            )
            async with app.router.lifespan_context(app):
                while not state(app).upstream.connected:
                    await asyncio.sleep(0.05)
                product = {"sku": "S", "name": "W", "category": "c", "reorder_point": 5,
                           "unit_cost": "1.00"}  # fmt: skip
                await js.publish("pulse.events.products.updated", event("product.updated", product))
                move = {"sku": "S", "warehouse": "WH-1", "reason": "adjustment"}
                await js.publish(
                    "pulse.events.stock.moved",
                    event("stock.moved", {**move, "quantity_delta": 10}),
                )
                await asyncio.sleep(2.0)  # settled: inactive
                print(f"rounds: {args.rounds}, load average: {os.getloadavg()}")
                for i in range(args.rounds):
                    delta = -8 if i % 2 == 0 else 8  # 10 -> 2 (fires), 2 -> 10 (resolves)
                    arrived.clear()
                    notice_seen.clear()
                    before_n, before_a = len(notices), len(arrivals)
                    started = time.perf_counter()
                    await js.publish(
                        "pulse.events.stock.moved",
                        event("stock.moved", {**move, "quantity_delta": delta}),
                    )
                    await asyncio.wait_for(notice_seen.wait(), 10)
                    deadline = time.perf_counter() + 10
                    while len(arrivals) == before_a:
                        if time.perf_counter() > deadline:
                            engine = state(app).alerts.engine  # type: ignore[union-attr]
                            raise TimeoutError(f"no notification: {engine.state}")
                        await asyncio.sleep(0.0005)
                    notice_ms.append((notices[before_n] - started) * 1000)
                    alert_ms.append((arrivals[before_a] - started) * 1000)
                    await asyncio.sleep(0.05)
    finally:
        await nc.close()
        server.stop()
        receiver.shutdown()
    for name, values in (("change notice (baseline)", notice_ms), ("alert webhook", alert_ms)):
        print(
            f"{name:26s} p50 {statistics.median(values):7.1f} ms  p99"
            f" {percentile(values, 99):7.1f} ms  max {max(values):7.1f} ms"
        )
    extra = [a - n for a, n in zip(alert_ms, notice_ms, strict=True)]
    print(f"alert minus notice         p50 {statistics.median(extra):7.1f} ms  p99"
          f" {percentile(extra, 99):7.1f} ms")  # fmt: skip
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
