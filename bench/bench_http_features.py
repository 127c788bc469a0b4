"""HTTP features' cost: compression on and off, ETag revalidation, tracing on and off.

Run: ``.venv/bin/python -m bench.bench_http_features [--seconds 5] [--events 5000]``.
Every figure is next to bare Starlette (same uvicorn settings, same response bytes) in the
same run, as a ratio; see docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gzip
import json
import os
import statistics
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
TRACED = {"traceparent": TRACEPARENT}


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
    """One client, then 32 clients, back to back: req/s and latencies."""
    one, errors_one = await http_load(port, request, 1, seconds, expect)
    many, errors_many = await http_load(port, request, 32, seconds, expect)
    return {
        "one_req_s": round(len(one) / seconds),
        "one_p50_ms": round(percentile(one, 50) * 1000, 3),
        "one_p99_ms": round(percentile(one, 99) * 1000, 3),
        "many_req_s": round(len(many) / seconds),
        "many_p99_ms": round(percentile(many, 99) * 1000, 3),
        "errors": errors_one + errors_many,
    }


def summary(rounds: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds, and the median of each round's ratio to the baseline."""
    out: dict[str, Any] = {}
    for key in ("one_req_s", "one_p50_ms", "one_p99_ms", "many_req_s", "many_p99_ms"):
        out[key] = statistics.median(r[key] for r in rounds)
        out[key + "_ratio"] = round(
            statistics.median(r[key] / b[key] for r, b in zip(rounds, baseline, strict=True)), 2
        )
    out["errors"] = sum(r["errors"] for r in rounds)
    return out


async def main_async(seconds: float, events: int, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%H:%M:%S UTC", time.gmtime()),
        "load_before": os.getloadavg(),
    }
    uncached = {"GATEWAY_CACHE_ENTRIES": "0", "GATEWAY_RESPONSE_CACHE_ENTRIES": "0"}
    traced = {"GATEWAY_TRACING": "true", "BENCH_TRACE_SDK": "1"}
    with contextlib.ExitStack() as stacks:
        # All systems up at once, measured in turns: shared load hits them alike.
        plain = stacks.enter_context(running_stack())
        tracing = stacks.enter_context(running_stack(traced))
        raw = stacks.enter_context(running_stack(uncached))
        raw_tracing = stacks.enter_context(running_stack({**uncached, **traced}))
        for stack in (plain, tracing, raw, raw_tracing):
            await prefill(stack, events)
        query = sales_query()
        body = json.dumps({"query": query, "variables": None}).encode()
        answer = httpx.post(
            plain.gateway_url + "/graphql",
            content=body,
            headers={"content-type": "application/json", "accept-encoding": "identity"},
        ).content
        report["response_bytes"] = len(answer)
        report["gzip_bytes"] = len(gzip.compress(answer, 6, mtime=0))
        report["br_bytes"] = len(brotli.compress(answer, quality=4))
        tmp = stacks.enter_context(tempfile.TemporaryDirectory())
        bare = stacks.enter_context(bare_server(answer, "application/json", Path(tmp)))
        port = plain.gateway_port
        tag = httpx.get(plain.gateway_url + "/graphql", params={"query": query}).headers["etag"]
        post = post_request(port, body)
        cases: dict[str, tuple[int, bytes, bytes]] = {
            "bare_starlette": (bare, post_request(bare, body), b"200"),
            "post_identity": (port, post, b"200"),
            "post_gzip": (port, with_headers(post, {"Accept-Encoding": "gzip"}), b"200"),
            "post_br": (port, with_headers(post, {"Accept-Encoding": "br"}), b"200"),
            "get_200": (port, get_request(port, query, {}), b"200"),
            "get_304": (port, get_request(port, query, {"If-None-Match": tag}), b"304"),
            "traceparent_tracing_off": (
                port,
                with_headers(post, TRACED),
                b"200",
            ),
            "traceparent_tracing_on": (
                tracing.gateway_port,
                with_headers(
                    post_request(tracing.gateway_port, body), {"traceparent": TRACEPARENT}
                ),
                b"200",
            ),
            "uncached_tracing_off": (
                raw.gateway_port,
                with_headers(post_request(raw.gateway_port, body), TRACED),
                b"200",
            ),
            "uncached_tracing_on": (
                raw_tracing.gateway_port,
                with_headers(post_request(raw_tracing.gateway_port, body), TRACED),
                b"200",
            ),
        }
        for target, request, expect in cases.values():
            await http_load(target, request, 4, 0.5, expect)  # warm up
        measured: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (target, request, expect) in cases.items():
                measured[name].append(await measure(target, request, seconds, expect))
    baseline = measured["bare_starlette"]
    report["results"] = {name: summary(values, baseline) for name, values in measured.items()}
    # Tracing overhead against the same gateway without it, round by round.
    for on, off in (
        ("traceparent_tracing_on", "traceparent_tracing_off"),
        ("uncached_tracing_on", "uncached_tracing_off"),
    ):
        report["results"][on]["vs_tracing_off"] = summary(measured[on], measured[off])
    report["load_after"] = os.getloadavg()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    report = asyncio.run(main_async(args.seconds, args.events, args.rounds))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
