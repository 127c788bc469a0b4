"""Export throughput (rows/s) and peak RSS per format, 1M rows by default.

A synthetic service answers ``stock_movements`` pages over a real nats-server (rows made
on demand, so the source holds one page); ``pulse-bi export`` runs as a child process
per format and its peak RSS comes from ``wait4``. The baseline, in the same run, is a
child that pages through the same rows and writes nothing.

    .venv/bin/python -m bench.bench_export [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from pulse_bi.contract import query_subject
from pulse_bi.natsserver import LocalNatsServer

_FETCH_ONLY = """
import asyncio, sys, time
from gateway.exports.params import parse_export_params
from gateway.exports.stream import pages
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.upstream import Upstream
from gateway.versions import Versions
from pulse_bi.contract import BY_NAME

async def main():
    s = Settings(nats_url=sys.argv[1], query_timeout=30.0)
    up = Upstream(s, Versions(s.version_ttl), Metrics())
    await up.start()
    n = 0
    params = parse_export_params(BY_NAME["stock_movements"], [], s.export_max_rows)
    async for page in pages(up.request, params, s.export_max_rows):
        n += len(page)
    await up.close()
    print(n, file=sys.stderr)

asyncio.run(main())
"""


async def serve(url: str, total: int) -> Any:
    nc = await nats.connect(url)

    async def handle(msg: Any) -> None:
        params = json.loads(msg.data)
        offset, limit = params.get("offset", 0), params["limit"]
        rows = [
            {
                "sequence": i,
                "time": "2026-11-25T10:04:05.123456+00:00",
                "sku": f"SKU-{i % 977:05d}",
                "warehouse": f"WH-{i % 7}",
                "quantity_delta": (i % 41) - 20,
                "reason": "shipment",
            }
            for i in range(offset, min(offset + limit, total))
        ]
        await msg.respond(json.dumps({"version": 1, "data": rows}).encode())

    await nc.subscribe(query_subject("stock_movements"), cb=handle)
    return nc


def run(command: list[str]) -> tuple[float, int, str]:
    """(seconds, peak RSS in KiB, stderr) of a child process."""
    import subprocess

    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        err.seek(0)
        text = err.read().decode()
    if status != 0:
        raise RuntimeError(f"{command} failed: {text}")
    return elapsed, usage.ru_maxrss, text


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="bench-export-"))
    server = LocalNatsServer(store_dir=store / "js").start()
    nc = await serve(server.url, args.rows)
    try:
        print(f"rows: {args.rows}, load average: {os.getloadavg()}")
        base = await asyncio.to_thread(run, [sys.executable, "-c", _FETCH_ONLY, server.url])
        print(f"baseline (page through, no file): {base[0]:.1f} s, "
              f"{args.rows / base[0]:,.0f} rows/s, peak RSS {base[1] / 1024:.0f} MiB")  # fmt: skip
        for fmt in ("csv", "parquet", "xlsx"):
            out = store / f"out.{fmt}"
            command = [
                sys.executable, "-m", "pulse_bi", "export", "stock_movements",
                "--format", fmt, "--out", str(out), "--nats-url", server.url, "--timeout", "30",
            ]  # fmt: skip
            seconds, rss, _ = await asyncio.to_thread(run, command)
            print(
                f"{fmt:8s} {seconds:6.1f} s  {args.rows / seconds:10,.0f} rows/s"
                f"  ({base[0] / seconds:.2f} x baseline)  peak RSS {rss / 1024:5.0f} MiB"
                f"  file {out.stat().st_size / 2**20:.1f} MiB"
            )
        print(f"load average after: {os.getloadavg()}")
    finally:
        await nc.close()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
