"""Hostile and heavy requests against one gateway process, and /health meanwhile.

Run: ``.venv/bin/python -m bench.bench_hostile [--events 20000]``. Starts nats-server, the
materializer and the gateway (one uvicorn worker) as their own processes, prefills
simulated events, then sends each request below while another client polls /health, and
reports the request's time and answer, /health's latency meanwhile (next to its idle
latency in the same run) and the gateway's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import httpx
import psutil
from graphql import get_introspection_query

from bench.bench_gateway import machine, prefill
from bench.gateway_stack import percentile, running_stack

OVERDUE = (
    "invoiceId customerId customerName orderId amount paid balance issuedOn dueDate "
    "daysOverdue bucket"
)


def fan_out(fragments: int) -> str:
    """Each fragment spreads the next twice (about 1 KB for 24)."""
    chain = " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(fragments)
    )
    return f"{{ ...F0 }} {chain} fragment F{fragments} on Query {{ pipeline {{ lag }} }}"


def requests() -> dict[str, bytes]:
    """The request bodies, by name."""
    aliases = " ".join(
        f'a{i}: overdueInvoices(asOf: "9999-12-31") {{ {OVERDUE} }}' for i in range(30)
    )
    deep = "[" * 1000 + "]" * 1000
    bodies: dict[str, Any] = {
        "fragment fan-out (24 fragments)": {"query": fan_out(24)},
        "30 aliases of overdueInvoices(asOf: 9999-12-31)": {"query": f"{{ {aliases} }}"},
        "graphql-core standard introspection": {
            "query": get_introspection_query(True, True, True, True, True, True, True)
        },
        "overdueInvoices(asOf: 9999-12-31), all fields": {
            "query": f'{{ overdueInvoices(asOf: "9999-12-31") {{ {OVERDUE} }} }}'
        },
        "stockLevels, all rows": {"query": "{ stockLevels { sku warehouse onHand reorderPoint } }"},
    }
    encoded = {name: json.dumps(body).encode() for name, body in bodies.items()}
    encoded["1,000-deep variables"] = (
        b'{"query": "{ pipeline { lag } }", "variables": {"a": ' + deep.encode() + b"}}"
    )
    return encoded


async def health_during(http: httpx.AsyncClient, send: Any) -> tuple[Any, list[float]]:
    """Poll /health every 5 ms while `send` runs; its result and every /health round-trip time."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            started = time.perf_counter()
            # Its status is not the point (on a loaded machine the materializer may answer
            # late): how long the gateway takes to answer is.
            await http.get("/health")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)

    poller = asyncio.create_task(poll())
    await asyncio.sleep(0.05)
    try:
        result = await send
    finally:
        done.set()
        await poller
    return result, latencies


async def bench(events: int) -> dict[str, Any]:
    """Every request once, /health polled meanwhile."""
    results: dict[str, Any] = {"machine": machine(), "events": events}
    with running_stack() as stack:
        await prefill(stack, events)
        gateway = psutil.Process(stack.pid("gateway"))
        async with (
            httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as poller,
            httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as client,
        ):
            idle = []
            for _ in range(100):
                started = time.perf_counter()
                await poller.get("/health")
                idle.append(time.perf_counter() - started)
            results["health_idle_ms"] = {
                "p50": round(statistics.median(idle) * 1000, 2),
                "max": round(max(idle) * 1000, 2),
            }
            results["rss_mb_start"] = round(gateway.memory_info().rss / 2**20)
            for name, body in requests().items():

                async def send(body: bytes = body) -> tuple[httpx.Response, float]:
                    started = time.perf_counter()
                    response = await client.post(
                        "/graphql",
                        content=body,
                        headers={
                            "content-type": "application/json",
                            "accept": "application/graphql-response+json",
                        },
                    )
                    return response, time.perf_counter() - started

                (response, elapsed), latencies = await health_during(poller, send())
                payload = response.json()
                errors = payload.get("errors") or []
                results[name] = {
                    "status": response.status_code,
                    "code": errors[0].get("extensions", {}).get("code") if errors else None,
                    "response_bytes": len(response.content),
                    "seconds": round(elapsed, 3),
                    "health_ms_p99": round(percentile(latencies, 99) * 1000, 1),
                    "health_ms_max": round(max(latencies) * 1000, 1),
                    "rss_mb_after": round(gateway.memory_info().rss / 2**20),
                }
                print(name, json.dumps(results[name]), flush=True)
    return results


def main() -> None:
    """Run and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="simulated events to prefill")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(bench(args.events)), indent=2))


if __name__ == "__main__":
    main()
