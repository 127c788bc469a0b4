"""HTTP features' cost: compression on and off, ETag revalidation, tracing on and off.

Run: ``.venv/bin/python -m bench.bench_http_features [--seconds 5] [--events 5000]``.
Every figure is next to bare Starlette (same uvicorn settings, same response bytes) in the
same run, as a ratio; see docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import json
import os
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import brotli
import httpx

from bench.bench_gateway import SALES_FIELDS, hour_start, machine, prefill
from bench.gateway_stack import bare_server, http_load, percentile, post_request, running_stack

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sales_query() -> str:
    """salesByHour over the last 24 hours (24 rows)."""
    end = hour_start() + dt.timedelta(hours=1)
    start = end - dt.timedelta(hours=24)
    return (
        f'{{ salesByHour(from: "{start.isoformat()}", to: "{end.isoformat()}") '
        f"{{ {SALES_FIELDS} }} }}"
    )


def with_headers(request: bytes, headers: dict[str, str]) -> bytes:
    """A raw request with more headers after the request line."""
    line, rest = request.split(b"\r\n", 1)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    return line + b"\r\n" + extra + rest


def get_request(port: int, query: str, headers: dict[str, str]) -> bytes:
    """A keep-alive GET /graphql request."""
    target = "/graphql?" + urllib.parse.urlencode({"query": query})
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode()


async def measure(port: int, request: bytes, seconds: float, expect: bytes = b"200") -> Any:
    """One client and 32 clients, back to back."""
    await http_load(port, request, 4, 1.0, expect)  # warm up
    one, errors_one = await http_load(port, request, 1, seconds, expect)
    many, errors_many = await http_load(port, request, 32, seconds, expect)
    return {
        "one_client": {
            "req_s": round(len(one) / seconds),
            "p50_ms": round(percentile(one, 50) * 1000, 3),
            "p99_ms": round(percentile(one, 99) * 1000, 3),
            "errors": errors_one,
        },
        "32_clients": {
            "req_s": round(len(many) / seconds),
            "p50_ms": round(percentile(many, 50) * 1000, 3),
            "p99_ms": round(percentile(many, 99) * 1000, 3),
            "errors": errors_many,
        },
    }


async def gateway_runs(port: int, seconds: float) -> dict[str, Any]:
    """Compression and revalidation on one gateway."""
    query = sales_query()
    body = json.dumps({"query": query, "variables": None}).encode()
    post = post_request(port, body)
    results: dict[str, Any] = {}
    plain = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        content=body,
        headers={"content-type": "application/json", "accept-encoding": "identity"},
    )
    results["response_bytes"] = len(plain.content)
    results["gzip_bytes"] = len(gzip.compress(plain.content, 6, mtime=0))
    results["br_bytes"] = len(brotli.compress(plain.content, quality=4))
    results["post_identity"] = await measure(port, post, seconds)
    results["post_gzip"] = await measure(
        port, with_headers(post, {"Accept-Encoding": "gzip"}), seconds
    )
    results["post_br"] = await measure(port, with_headers(post, {"Accept-Encoding": "br"}), seconds)
    first = httpx.get(f"http://127.0.0.1:{port}/graphql", params={"query": query})
    tag = first.headers["etag"]
    results["get_200"] = await measure(port, get_request(port, query, {}), seconds)
    results["get_304"] = await measure(
        port, get_request(port, query, {"If-None-Match": tag}), seconds, b"304"
    )
    return results


async def traced_runs(port: int, seconds: float) -> dict[str, Any]:
    """The POST with a traceparent header (what a traced client sends)."""
    body = json.dumps({"query": sales_query(), "variables": None}).encode()
    request = with_headers(post_request(port, body), {"traceparent": TRACEPARENT})
    return await measure(port, request, seconds)


async def main_async(seconds: float, events: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%H:%M:%S UTC", time.gmtime()),
    }
    report["load_before"] = os.getloadavg()
    with running_stack() as stack:
        await prefill(stack, events)
        report["gateway"] = await gateway_runs(stack.gateway_port, seconds)
        report["tracing_off"] = await traced_runs(stack.gateway_port, seconds)
        reply = httpx.post(
            stack.gateway_url + "/graphql", json={"query": sales_query(), "variables": None}
        )
        with (
            tempfile.TemporaryDirectory() as tmp,
            bare_server(reply.content, "application/json", Path(tmp)) as port,
        ):
            body = json.dumps({"query": sales_query(), "variables": None}).encode()
            report["bare_starlette"] = await measure(port, post_request(port, body), seconds)
    os.environ["BENCH_TRACE_SDK"] = "1"
    try:
        with running_stack({"GATEWAY_TRACING": "true"}) as stack:
            await prefill(stack, events)
            report["tracing_on"] = await traced_runs(stack.gateway_port, seconds)
        uncached = {"GATEWAY_CACHE_ENTRIES": "0", "GATEWAY_RESPONSE_CACHE_ENTRIES": "0"}
        with running_stack({**uncached, "GATEWAY_TRACING": "true"}) as stack:
            await prefill(stack, events)
            report["uncached_tracing_on"] = await traced_runs(stack.gateway_port, seconds)
    finally:
        del os.environ["BENCH_TRACE_SDK"]
    with running_stack(uncached) as stack:
        await prefill(stack, events)
        report["uncached_tracing_off"] = await traced_runs(stack.gateway_port, seconds)
    report["load_after"] = os.getloadavg()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.seconds, args.events)), indent=1))


if __name__ == "__main__":
    main()
