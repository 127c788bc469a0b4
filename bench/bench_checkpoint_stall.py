"""How long a checkpoint holds the writer back: small batches on a large history, with
DuckDB's automatic checkpoint (inside a COMMIT) against the materializer's (a
CHECKPOINT statement after the batch; docs/OPERATIONS.md, "Checkpoints").

    python -m bench.bench_checkpoint_stall --prefill 800000 --events 100000 --rounds 2

Each round fills one new file per mode with the same ``--prefill`` events (20,000-event
batches, as a catch-up), then applies ``--events`` more in ``--batch``-event batches, as
a materializer at ~1,000 events/s commits them; the modes alternate, so a change of load
hits them alike.

- ``duckdb``: DuckDB checkpoints on its own at ``--threshold`` of WAL.
- ``materializer``: DuckDB's own threshold is ``BACKSTOP_FACTOR`` times higher, and a
  CHECKPOINT statement follows each batch whose WAL reached ``--threshold``.
- ``no-vacuum``: the same with DuckDB's vacuum off (``max_vacuum_tasks`` 0): no merging
  of partly filled row groups (an experiment; docs/BENCHMARKS.md, "Checkpoints after
  the notice", says why the materializer does not do it).
- ``large-groups``: the materializer with DuckDB's default row groups (122,880 rows)
  instead of ``db.ROW_GROUP_SIZE``.

``--modes`` picks some of them. With ``--one-table ROWS`` it runs only one table shaped
like ``stock_events``, 4,000 rows appended before each CHECKPOINT: DuckDB's default row
groups with its vacuum on and off, then ``db.ROW_GROUP_SIZE`` rows with the vacuum on:
where the checkpoints that merge row groups cost more (docs/BENCHMARKS.md, "Checkpoints
after the notice", "Smaller row groups").

Prints, per mode and round, the time of a batch including the checkpoint that follows
it (p50, p99, the largest three), the checkpoints (the WAL shrank) and their times, µs
per event over the whole run, the file's size at the end and the median time of one
round of ``bench.bench_memory``'s seven named queries on it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_apply import generate
from bench.bench_ingest import machine
from bench.bench_memory import QUERIES
from materializer import db
from materializer.settings import size_in_bytes
from materializer.store import RawMessage, Store

QUERY_ROUNDS = 9
MODES = ("duckdb", "materializer", "no-vacuum", "large-groups")
#: DuckDB's own row group size, which ``large-groups`` and ``--one-table`` compare with.
DUCKDB_ROW_GROUP_SIZE = 122_880


def _wal(path: Path) -> int:
    wal = db.wal_path(path)
    return wal.stat().st_size if wal.exists() else 0


def one_table(rows: int, per: int, vacuum_tasks: int, row_group_size: int) -> str:
    """One table shaped like ``stock_events``, ``per`` rows appended before each
    CHECKPOINT up to ``rows``: the checkpoints' times, and how many row groups the
    table is stored in, with DuckDB's vacuum at ``vacuum_tasks`` (0: off)."""
    path = Path(tempfile.mkdtemp()) / "one.duckdb"
    conn = db.connect(path, memory_limit=db.MEMORY_LIMIT, threads=1, row_group_size=row_group_size)
    times: list[float] = []
    try:
        conn.execute("SET checkpoint_threshold = '1TB'")
        conn.execute(f"SET max_vacuum_tasks = {vacuum_tasks:d}")
        conn.execute(
            "CREATE TABLE s (sequence BIGINT, event_id VARCHAR, time TIMESTAMPTZ, sku VARCHAR,"
            " warehouse VARCHAR, quantity_delta BIGINT, reason VARCHAR, site VARCHAR)"
        )
        for start in range(0, rows, per):
            conn.execute(
                "INSERT INTO s SELECT range, uuid()::VARCHAR, TIMESTAMPTZ '2026-11-25 00:00Z',"
                " 'SKU-' || lpad((hash(range) % 1000)::VARCHAR, 4, '0'), 'W1',"
                " (hash(range) % 55)::BIGINT - 5, 'receipt', '' FROM range(?, ?)",
                [start, start + per],
            )
            started = time.perf_counter()
            conn.execute("CHECKPOINT")
            times.append(time.perf_counter() - started)
        groups = conn.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('s')"
        ).fetchone()
    finally:
        conn.close()
    times.sort()
    return (
        f"one table, row groups of {row_group_size:,} rows, vacuum tasks {vacuum_tasks}:"
        f" {len(times)} checkpoints, p50"
        f" {statistics.median(times) * 1e3:.0f} ms, largest"
        f" {[round(t * 1000) for t in times[-6:]]} ms; {groups[0] if groups else 0} row groups"
    )


def run(mode: str, messages: list[RawMessage], prefill: int, args: argparse.Namespace) -> str:
    threshold = size_in_bytes(args.threshold)
    path = Path(tempfile.mkdtemp()) / f"{mode}.duckdb"
    large = DUCKDB_ROW_GROUP_SIZE if mode == "large-groups" else None
    store = Store.open(path, memory_limit=db.MEMORY_LIMIT, row_group_size=large)
    try:
        for start in range(0, prefill, 20_000):
            store.apply_batch(messages[start : min(start + 20_000, prefill)])
        store.conn.execute("CHECKPOINT")
        if mode == "duckdb":
            store.conn.execute(f"SET checkpoint_threshold = '{threshold} bytes'")
        else:
            db.set_backstop_threshold(store.conn, threshold)
        if mode == "no-vacuum":
            store.conn.execute("SET max_vacuum_tasks = 0")
        batches: list[float] = []
        checkpoints: list[float] = []
        began = time.perf_counter()
        for start in range(prefill, len(messages), args.batch):
            wal_before = _wal(path)
            started = time.perf_counter()
            store.apply_batch(messages[start : start + args.batch])
            committed = time.perf_counter()
            if mode != "duckdb" and _wal(path) >= threshold:
                store.conn.execute("CHECKPOINT")
                checkpoints.append(time.perf_counter() - committed)
            elif mode == "duckdb" and _wal(path) < wal_before:
                checkpoints.append(committed - started)  # the whole batch, COMMIT included
            batches.append(time.perf_counter() - started)
        elapsed = time.perf_counter() - began
        events = len(messages) - prefill
        size = path.stat().st_size / 2**20
        rounds = []
        for _ in range(QUERY_ROUNDS):
            started = time.perf_counter()
            for name, params in QUERIES:
                store.query(name, params)
            rounds.append(time.perf_counter() - started)
    finally:
        store.close()
    batches.sort()
    ms = [round(t * 1000) for t in sorted(checkpoints)]
    return (
        f"{mode:>12}: {len(batches)} batches, p50 {statistics.median(batches) * 1e3:.1f} ms,"
        f" p99 {batches[int(len(batches) * 0.99)] * 1e3:.1f} ms,"
        f" largest {[round(t * 1000) for t in batches[-3:]]} ms;"
        f" {len(ms)} checkpoints {ms} ms; {elapsed / events * 1e6:.0f} µs/event;"
        f" file {size:.1f} MB; the seven named queries {statistics.median(rounds) * 1e3:.1f} ms"
    )


def main(args: argparse.Namespace) -> None:
    print(machine())
    if args.one_table:
        cases = [(100, DUCKDB_ROW_GROUP_SIZE), (0, DUCKDB_ROW_GROUP_SIZE)]  # vacuum on, off
        for vacuum_tasks, size in [*cases, (100, db.ROW_GROUP_SIZE)]:
            print(one_table(args.one_table, 4_000, vacuum_tasks, size), flush=True)
        return
    print(
        f"prefill {args.prefill:,}, then {args.events:,} events in batches of {args.batch},"
        f" threshold {args.threshold}"
    )
    messages = list(generate(args.prefill + args.events, duplicates=0.01))
    modes = args.modes.split(",")
    for round_ in range(args.rounds):
        order = modes if round_ % 2 == 0 else modes[::-1]
        for mode in order:
            print(f"round {round_ + 1}", run(mode, messages, args.prefill, args), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefill", type=int, default=800_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--threshold", default=db.CHECKPOINT_THRESHOLD)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated, of " + ", ".join(MODES)
    )
    parser.add_argument(
        "--one-table", type=int, default=0, metavar="ROWS", help="only the one-table case"
    )
    main(parser.parse_args())
