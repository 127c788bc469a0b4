"""Disk space a DuckDB file needs while it grows: peak on disk versus final file size.

Run: ``.venv/bin/python -m bench.bench_disk [--events 1000000]``.
Publishes simulated events, ingests them with the default settings into a new file and
samples, every 10 ms, the bytes on disk of the file, its WAL and its ``.tmp`` spill
folder (what the data volume must hold at once), through ingest and the checkpoint at
close. Prints the peak, the final size and their ratio (docs/OPERATIONS.md, "Disk space").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path

from bench.bench_ingest import machine, prefill
from materializer.app import Materializer
from materializer.settings import Settings
from pulse_bi.natsserver import LocalNatsServer


def on_disk(path: Path) -> int:
    """Bytes the DuckDB file, its WAL and its spill folder take (allocated blocks)."""
    total = 0
    spill = path.with_name(path.name + ".tmp")
    files = [path, path.with_name(path.name + ".wal")]
    with contextlib.suppress(FileNotFoundError):
        files.extend(spill.iterdir())
    for candidate in files:
        with contextlib.suppress(FileNotFoundError):  # a WAL or spill file just removed
            total += candidate.stat().st_blocks * 512
    return total


class Sampler(threading.Thread):
    """Samples ``on_disk`` until stopped; keeps the peak."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, on_disk(self.path))
            time.sleep(0.01)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalNatsServer(store_dir=Path(tmp) / "js").start()
        try:
            last = await prefill(server.url, args.events)
            path = Path(tmp) / "disk.duckdb"
            settings = Settings(nats_url=server.url, duckdb_path=path, http_port=0)
            sampler = Sampler(path)
            sampler.start()
            started = time.perf_counter()
            async with Materializer(settings) as running:
                await running.wait_for_sequence(last, timeout=3600)
            seconds = time.perf_counter() - started
            sampler.done.set()
            sampler.join()
            final = on_disk(path)
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "machine": machine(),
                "events": last,
                "ingest_and_close_s": round(seconds, 1),
                "final_file_mb": round(final / 1e6, 1),
                "peak_on_disk_mb": round(sampler.peak / 1e6, 1),
                "peak_over_final": round(sampler.peak / final, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args()))
