"""Ingest rate and memory by ``DUCKDB_CHECKPOINT_THRESHOLD`` and ``DUCKDB_MEMORY_LIMIT``,
against the raw consume rate.

    python -m bench.bench_checkpoint --events 2000000 --variants 32MB/128MB,16MB/64MB

One stream, then per round: the raw ordered consume (``bench.bench_ingest``'s baseline)
and an ingest into a new file for each variant (threshold/memory limit), in turn, so a
change of load hits them alike. Prints each ingest's events/s, its ratio to the raw
rate of its round, the RSS at the end, and the rows DuckDB held un-checkpointed
(``IN_MEMORY_TABLE``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from bench.bench_ingest import machine, prefill, raw_consume_rate
from bench.bench_memory import QUERIES
from materializer.app import Materializer
from materializer.db import MEMORY_LIMIT
from materializer.settings import Settings
from pulse_bi.natsserver import LocalNatsServer

MB = 2**20
QUERY_ROUNDS = 15


async def ingest(settings: Settings, last: int) -> tuple[float, float, float, float]:
    """Events/s from an empty file to ``last`` committed; RSS and IN_MEMORY_TABLE in MB;
    then the milliseconds of one round of ``bench.bench_memory``'s seven named queries
    (the median of ``QUERY_ROUNDS``)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=3600)
        elapsed = loop.time() - started
        assert running.store is not None
        with running.store.conn.cursor() as cur:
            row = cur.execute(
                "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()"
                " WHERE tag = 'IN_MEMORY_TABLE'"
            ).fetchone()
        rss = psutil.Process().memory_info().rss / MB
        rounds = []
        for _ in range(QUERY_ROUNDS):
            begun = time.perf_counter()
            for name, params in QUERIES:
                running.store.query(name, params)
            rounds.append((time.perf_counter() - begun) * 1000)
    return last / elapsed, rss, (row[0] if row else 0) / MB, statistics.median(rounds)


async def main(args: argparse.Namespace) -> None:
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = LocalNatsServer(store_dir=root / "nats").start()
        try:
            last = await prefill(server.url, args.events)
            print(f"machine: {machine()}; stream: {last} events; load {os.getloadavg()}")
            ratios: dict[str, list[float]] = {v: [] for v in variants}
            for round_ in range(args.rounds):
                raw = await raw_consume_rate(server.url, last)
                print(f"round {round_}: raw consume {raw:,.0f} events/s", flush=True)
                for variant in variants:
                    threshold, _, limit = variant.partition("/")
                    path = root / f"ingest-{round_}.duckdb"
                    settings = Settings(
                        nats_url=server.url,
                        duckdb_path=path,
                        http_port=0,
                        duckdb_checkpoint_threshold=threshold,
                        duckdb_memory_limit=limit or MEMORY_LIMIT,
                    )
                    rate, rss, held, queries = await ingest(settings, last)
                    ratios[variant].append(rate / raw)
                    print(
                        f"  {variant:>12}: {rate:,.0f} events/s = {rate / raw:.2f} x raw,"
                        f" RSS {rss:.0f} MB, IN_MEMORY_TABLE {held:.0f} MB,"
                        f" seven queries {queries:.0f} ms",
                        flush=True,
                    )
                    for leftover in root.glob(f"{path.name}*"):
                        leftover.unlink()
            print(f"load at the end {os.getloadavg()}")
            for variant, values in ratios.items():
                print(f"{variant:>12}: median ratio {statistics.median(values):.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--variants", default="32MB/128MB,16MB/64MB", help="threshold/limit")
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
