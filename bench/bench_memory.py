"""Where a long-running store's memory goes: small batches for minutes, sampled.

    python -m bench.bench_memory --prefill 50000 --minutes 10 --batch 20
    python -m bench.bench_memory --minutes 10 --tracemalloc   # + Python heap diff
    python -m bench.bench_memory --queries 0    # writes only; --batch 0: queries only

A writer thread applies ``--batch``-event batches to a ``Store`` (as the materializer's
writer does) and, after each, ``--queries`` named queries run on a pool of query threads
(the gateway's live-query refreshes; the materializer answers them on four threads),
and a forced checkpoint every ``--checkpoint`` seconds (the app's ``CHECKPOINT_INTERVAL``).
Every ``--sample`` seconds one line: batches, RSS (and its file-backed part: the pages
of the shared libraries, ``RssFile``), USS, DuckDB's own accounting
(``duckdb_memory()``), glibc's heap (``mallinfo2``: bytes in use and bytes free but kept
by the allocator), the seen-id index, and with ``--tracemalloc`` the Python heap. At the
end, the figures again after ``malloc_trim(0)``: what the allocator kept but did not use.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from bench.bench_apply import generate, seen_index_bytes
from materializer.db import MEMORY_LIMIT
from materializer.memory import limit_malloc_arenas
from materializer.store import Store

MB = 2**20
#: The live queries the soak's subscribers refresh after every batch, and its HTTP ones.
_WINDOW = {"from": "2026-11-25T00:00:00Z", "to": "2026-11-28T00:00:00Z"}
QUERIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("pipeline", {}),
    ("sales_summary", _WINDOW),
    ("ar_aging", {}),
    ("top_products", {**_WINDOW, "limit": 5}),
    ("sales_by_hour", _WINDOW),
    ("stock_levels", {}),
    ("overdue_invoices", {}),
)


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc ≥ 2.33)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = MallInfo2


def sample(store: Store, process: psutil.Process, batches: int) -> dict[str, float]:
    """One line's figures, in MB."""
    memory = process.memory_full_info()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    info = _LIBC.mallinfo2()
    with store.conn.cursor() as cur:
        rows = cur.execute(
            "SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0"
        ).fetchall()
    figures = {
        "batches": batches,
        "rss": memory.rss / MB,
        "file": int(status["RssFile"].split()[0]) / 1024,
        "uss": memory.uss / MB,
        "duckdb": sum(b for _, b in rows) / MB,
        "heap_used": (info.uordblks + info.hblkhd) / MB,
        "heap_free": info.fordblks / MB,
        "seen": seen_index_bytes(store) / MB,
        "recent": len(store._seen.recent),
    }
    if tracemalloc.is_tracing():
        figures["python"] = tracemalloc.get_traced_memory()[0] / MB
    figures.update({f"duckdb:{tag}": b / MB for tag, b in rows})
    return figures


def show(figures: dict[str, float]) -> None:
    """Print one sample."""
    tags = " ".join(f"{k[7:]}={v:.0f}" for k, v in figures.items() if k.startswith("duckdb:"))
    python = f" python {figures['python']:6.1f}" if "python" in figures else ""
    print(
        f"{figures['batches']:>8.0f} batches  RSS {figures['rss']:6.1f}"
        f" (file {figures['file']:5.1f})  USS {figures['uss']:6.1f}"
        f"  duckdb {figures['duckdb']:6.1f} ({tags})  malloc used {figures['heap_used']:6.1f}"
        f" free {figures['heap_free']:6.1f}  seen {figures['seen']:5.1f}{python}",
        flush=True,
    )


def main() -> None:
    """Run the driver and print the samples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefill", type=int, default=50_000, help="events applied first")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run")
    parser.add_argument("--batch", type=int, default=20, help="events per small batch")
    parser.add_argument("--queries", type=int, default=4, help="named queries after each batch")
    parser.add_argument("--workers", type=int, default=4, help="query threads")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--memory-limit", default=MEMORY_LIMIT, help="DuckDB memory_limit")
    parser.add_argument("--threads", type=int, default=1, help="DuckDB threads")
    parser.add_argument(
        "--checkpoint", type=float, default=300.0, help="seconds between checkpoints (app: 300)"
    )
    parser.add_argument(
        "--malloc-arena-max", type=int, default=2, help="glibc arenas (app: MALLOC_ARENA_MAX)"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="trace the Python heap")
    parser.add_argument(
        "--set", action="append", default=[], help="a DuckDB setting: name=value (repeatable)"
    )
    parser.add_argument("--path", type=Path, default=None, help="DuckDB file (default: temp)")
    args = parser.parse_args()
    limit_malloc_arenas(args.malloc_arena_max)  # before any thread, as the app does
    with tempfile.TemporaryDirectory() as scratch:
        path = args.path or Path(scratch) / "memory.duckdb"
        store = Store.open(path, memory_limit=args.memory_limit, threads=args.threads)
        for setting in args.set:
            name, _, value = setting.partition("=")
            store.conn.execute(f"SET {name} = '{value}'")
        messages = generate(10**9, start_sequence=store.last_sequence() + 1, duplicates=0.01)
        for _ in range(0, args.prefill, 20_000):
            store.apply_batch(list(itertools.islice(messages, 20_000)))
        process = psutil.Process()
        pool = ThreadPoolExecutor(args.workers, thread_name_prefix="duckdb-query")
        queries = itertools.cycle(QUERIES)
        state = {"batches": 0}
        stop = threading.Event()

        def writer() -> None:
            try:
                write()
            finally:
                stop.set()

        def write() -> None:
            checkpointed = time.monotonic()
            while not stop.is_set():
                if time.monotonic() - checkpointed >= args.checkpoint:
                    store.checkpoint(force=True)
                    checkpointed = time.monotonic()
                store.apply_batch(list(itertools.islice(messages, args.batch)))
                asked = [pool.submit(store.query, *next(queries)) for _ in range(args.queries)]
                for future in asked:
                    future.result()
                state["batches"] += 1

        thread = threading.Thread(target=writer, name="writer")
        if args.tracemalloc:
            tracemalloc.start(10)
        thread.start()
        first_snapshot = None
        started = time.monotonic()
        try:
            while time.monotonic() - started < args.minutes * 60 and not stop.is_set():
                stop.wait(args.sample)
                show(sample(store, process, state["batches"]))
                if args.tracemalloc and first_snapshot is None:
                    first_snapshot = tracemalloc.take_snapshot()
        finally:
            stop.set()
            thread.join()
            pool.shutdown()
        if first_snapshot is not None:
            last = tracemalloc.take_snapshot().compare_to(first_snapshot, "traceback")
            print("Python heap growth since the first sample, largest first:")
            for stat in last[:8]:
                print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
                for line in stat.traceback.format()[-6:]:
                    print("     ", line)
        gc.collect()
        _LIBC.malloc_trim(0)
        print("after gc.collect() and malloc_trim(0):")
        show(sample(store, process, state["batches"]))
        store.close()


if __name__ == "__main__":
    main()
