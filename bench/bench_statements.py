"""Where a small batch's time goes, statement by statement: the writer's CPU per batch
of each SQL statement the aggregates run, after a history of ``--prefill`` events.

Run: ``.venv/bin/python -m bench.bench_statements [--prefill 100000] [--batch 40]``.
The store is fed ``bench_apply.generate``'s events (1 % re-sent), the prefill in
20,000-event batches, then ``--events`` in ``--batch``-event batches, as a materializer
at ~1,000 events/s commits them. With ``--stream orders`` those are ``order.created``
events alone, as the live part of ``bench_gateway`` publishes them
(``bench_gateway.order_event``). Each statement is timed (thread CPU) around
``execute`` on the batch's cursor and grouped by its text's first 90 characters; the
raw rows the batches staged (``materializer.aggregates.staged``) are counted by table; the
batches' wall time spread and the folds of the aggregate deltas (``Store.compact``) are
printed too, and the WAL bytes per event the batches wrote, then with the folds of what
they left (the store checkpoints before the batches; a checkpoint among them, DuckDB's
backstop at 64 MB, beyond ~60,000 events of the mix, leaves that figure out).
``--optimizer`` chooses how DuckDB's optimizer runs for the batches:
``switched`` as the materializer runs it (off for runs of plain statements,
``materializer.aggregates.batch.Optimizer``), ``on`` never switched off (the baseline
for that), ``off`` off for every statement. ``--fsync-mode NONE`` sets DuckDB's
``fsync_mode`` on the store's connection after the prefill (an experiment only: the
materializer never runs so). ``--reads N`` then times the named queries that read the
pipeline state and the soak's live sales queries (``READS``), the median of N each,
with the batches' delta rows waiting and again once they are folded: a view over a
base and its delta rows costs its reads a scan of the rows waiting (docs/BENCHMARKS.md,
"The pipeline state as a delta");
``pipeline`` reads the state from the store's memory since, and here, with no
materializer to know the archive horizon, one statement for it ("The pipeline state
from memory").
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_apply import generate
from bench.bench_gateway import bounded, order_event
from bench.live_probe import SUBJECT
from materializer import db
from materializer.aggregates import FOLDED, deltas
from materializer.aggregates import batch as batch_module
from materializer.store import RawMessage, Store

#: statement → [runs, wall seconds, CPU seconds]
TIMES: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
#: raw table → rows the timed batches staged in ``raw_staged`` (one INSERT a batch)
STAGED: collections.Counter[str] = collections.Counter()


class TimedCursor:
    """The batch's cursor, timing each ``execute``."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, *args: Any) -> Any:
        # DuckDB finds a frame's arrays among the locals of the function that calls
        # ``execute`` (``columns.scan``): this one, here, so they are copied in.
        caller = sys._getframe(1).f_locals
        here = sys._getframe().f_locals
        here.update({k: v for k, v in caller.items() if isinstance(v, dict) and k not in here})
        wall, cpu = time.perf_counter(), time.thread_time()
        result = self._cur.execute(sql, *args)
        # Not named ``frame``: an unbound local of that name would hide the copy above.
        staged = here.get("frame")
        if isinstance(staged, dict) and "raw_table" in staged:  # staged raw rows
            STAGED.update(staged["raw_table"])
        entry = TIMES[re.sub(r"\s+", " ", sql)[:90]]
        entry[0] += 1
        entry[1] += time.perf_counter() - wall
        entry[2] += time.thread_time() - cpu
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class Fixed(batch_module.Optimizer):
    """The optimizer left as the connection has it: never switched."""

    def on(self) -> Any:
        return self.conn

    def off(self) -> Any:
        return self.conn


#: Wide enough for the prefill's simulated times and ``--stream orders``' live ones.
_WINDOW = {"from": "2026-01-01T00:00:00Z", "to": "2028-01-01T00:00:00Z"}
#: The named queries ``--reads`` times: those that read ``pipeline_state``, and the
#: soak's live sales queries, which read the sales views over the deltas (bench/soak.py).
READS: dict[str, dict[str, Any]] = {
    "pipeline": {},
    "sites": {},
    "sales_summary": _WINDOW,
    "top_products": {**_WINDOW, "limit": 5},
}


def timed_reads(store: Store, repeat: int) -> dict[str, float]:
    """Each of ``READS`` run ``repeat`` times through the store: its median seconds."""
    medians: dict[str, float] = {}
    for name, params in READS.items() if repeat else ():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            store.query(name, params)
            times.append(time.perf_counter() - started)
        medians[name] = statistics.median(times)
    return medians


def _listed(medians: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds * 1e3:.2f} ms" for name, seconds in medians.items())


def main(args: argparse.Namespace) -> None:
    store_path = Path(tempfile.mkdtemp()) / "statements.duckdb"
    store = Store.open(store_path, row_group_size=args.row_group_size)
    if args.stream == "orders":
        now = datetime.now(UTC)
        messages = list(generate(args.prefill, duplicates=0.01))
        messages += [
            RawMessage(args.prefill + 1 + n, SUBJECT, order_event(now)[1], now, None)
            for n in range(args.events)
        ]
    else:
        messages = list(generate(args.prefill + args.events, duplicates=0.01))
    for start in range(0, args.prefill, 20_000):
        store.apply_batch(messages[start : min(start + 20_000, args.prefill)])
    if args.optimizer == "off":
        store.conn.execute("SET SESSION enable_optimizer = false")
    if args.fsync_mode:
        store.conn.execute(f"SET fsync_mode = '{args.fsync_mode}'")
    store.checkpoint(force=True)
    wal = db.wal_path(store_path)

    def wal_bytes() -> int:
        return wal.stat().st_size if wal.exists() else 0

    folds: list[float] = []
    plain_compact = Store.compact

    def timed_compact(self: Store, **which: bool) -> None:
        started = time.perf_counter()
        plain_compact(self, **which)
        folds.append(time.perf_counter() - started)

    Store.compact = timed_compact  # type: ignore[method-assign]
    # The store runs each batch on the connection its optimizer returns: timed here.
    switch = batch_module.Optimizer if args.optimizer == "switched" else Fixed
    untimed = store._optimizer.conn
    store._optimizer = switch(TimedCursor(untimed))  # type: ignore[arg-type]
    batches = 0
    walls: list[float] = []
    wall, cpu = time.perf_counter(), time.thread_time()
    written: int | None = 0  # the WAL's size, None once a checkpoint shrank it
    for start in range(args.prefill, len(messages), args.batch):
        started = time.perf_counter()
        store.apply_batch(messages[start : start + args.batch])
        walls.append(time.perf_counter() - started)
        batches += 1
        size = wal_bytes()
        written = None if written is None or size < written else size
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    Store.compact = plain_compact  # type: ignore[method-assign]
    store._optimizer = switch(untimed)  # the fold below is not one of the batches'
    waiting = store.read(lambda cur: deltas.pending_rows(cur, FOLDED))
    reads = timed_reads(store, args.reads)
    store.compact()
    folded = wal_bytes()
    folded_reads = timed_reads(store, args.reads)
    store.close()
    timed = sum(entry[2] for entry in TIMES.values())
    print(
        f"{batches} batches of {args.batch} after {args.prefill:,} events: per batch wall"
        f" {wall / batches * 1e3:.2f} ms, CPU {cpu / batches * 1e3:.2f} ms, of which the"
        f" timed statements {timed / batches * 1e3:.2f} ms"
        f" ({sum(e[0] for e in TIMES.values()) / batches:.1f} statements)"
    )
    walls.sort()
    print(
        f"  batch wall p50 {walls[len(walls) // 2] * 1e3:.1f} ms, p99"
        f" {walls[min(len(walls) - 1, len(walls) * 99 // 100)] * 1e3:.1f} ms, max"
        f" {walls[-1] * 1e3:.1f} ms; folds of the deltas: {len(folds)},"
        f" {', '.join(f'{f * 1e3:.0f}' for f in folds) or '-'} ms"
    )
    events = len(messages) - args.prefill
    if written is None or folded < written:
        print("  WAL bytes per event: not measured, a checkpoint ran among the batches")
    else:
        print(
            f"  WAL bytes per event: {written / events:,.0f} by the batches,"
            f" {folded / events:,.0f} with the folds of the staged rows and deltas they left"
        )
    if STAGED:
        print(
            "  raw rows staged per batch, by table: "
            + ", ".join(f"{table} {n / batches:.2f}" for table, n in STAGED.most_common())
        )
    if args.reads:
        print(
            f"  named queries, median of {args.reads}: with the {waiting:,} delta rows"
            f" waiting {_listed(reads)}; folded {_listed(folded_reads)}"
        )
    ranked = sorted(TIMES.items(), key=lambda item: -item[1][2])
    for text, (runs, _, seconds) in ranked[: args.top]:
        print(
            f"  {seconds / batches * 1e3:6.2f} ms/batch  {runs / batches:4.2f}/batch"
            f"  {seconds / runs * 1e3:6.2f} ms each  {text}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    # Bounded so that a typo is a usage error, not a crash after minutes of prefill.
    parser.add_argument("--prefill", type=bounded(int, 0, 100_000_000), default=100_000)
    parser.add_argument("--events", type=bounded(int, 1, 100_000_000), default=20_000)
    parser.add_argument("--batch", type=bounded(int, 1, 1_000_000), default=40)
    parser.add_argument(
        "--stream",
        choices=("mix", "orders"),
        default="mix",
        help="after the prefill: the simulated mix, or order.created alone",
    )
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument(
        "--row-group-size", type=int, default=None, help="rows (default: db.ROW_GROUP_SIZE)"
    )
    parser.add_argument("--optimizer", choices=("switched", "on", "off"), default="switched")
    parser.add_argument("--fsync-mode", choices=("STANDARD", "NONE"), default=None)
    parser.add_argument(
        "--reads",
        type=bounded(int, 0, 100_000),
        default=0,
        help="time the named queries that read the pipeline state, N times each",
    )
    main(parser.parse_args())
