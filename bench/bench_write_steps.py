"""Where the writer thread's CPU goes: CPU time per event of each step of a batch.

Run: ``.venv/bin/python -m bench.bench_write_steps [--events 200000] [--batch 20000]``.
The simulator's stream (the one ``bench_ingest`` publishes) is applied to an empty
DuckDB file with the default settings (``DUCKDB_MEMORY_LIMIT``, one DuckDB thread, so
DuckDB's work is counted in the calling thread), and the CPU time of this thread is
summed around each step of ``Store.apply_batch``: decoding, each aggregate's ``apply``,
the seen-id and key look-up, the pipeline record. What is left is split in two: the
Python around the steps inside the transaction (``Accepted`` objects, grouping by type),
and what follows it (the COMMIT and the seen-id index's update). The timers cost two
clock reads per decoded event, so the same stream is applied again without them to a
new file: the last line, the writer's real CPU per event. No NATS: the
consumer's share is ``bench_ingest``'s.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_gateway import bounded
from materializer import events
from materializer.aggregates import AGGREGATES, pipeline
from materializer.db import MEMORY_LIMIT
from materializer.store import RawMessage, Store
from pulse_bi.simulator import generate


def timed(
    owner: Any,
    name: str,
    label: str,
    spent: dict[str, float],
    clock: Callable[[], float] = time.thread_time,
) -> Callable[[], None]:
    """Replace ``owner.name`` by a wrapper adding the time it takes by ``clock`` (the
    thread's CPU time unless told) to ``spent[label]``; return what puts it back."""
    inner: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + clock() - started

    setattr(owner, name, wrapper)
    return functools.partial(setattr, owner, name, inner)


def main(args: argparse.Namespace) -> dict[str, float]:
    """Print the writer thread's CPU per event by step; return the figures (µs per event)."""
    received = datetime.now(UTC)
    messages = [
        RawMessage(sequence, m.subject, m.data, received)
        for sequence, m in enumerate(generate(7, args.events).messages, start=1)
    ]
    spent: dict[str, float] = {}
    restore = [timed(m, "apply", m.__name__.rsplit(".", 1)[-1], spent) for m in AGGREGATES]
    restore.append(timed(pipeline, "record", "rejects and pipeline state", spent))
    restore.append(timed(events, "decode", "decode and validate", spent))
    restore.append(timed(Store, "_resolve_keys", "seen ids and keys", spent))
    # Around every step above: not one of them, so kept apart from their sum.
    whole: dict[str, float] = {}
    restore.append(timed(Store, "_apply", "in the transaction", whole))
    try:
        total = _apply_all(messages, args.batch)
    finally:
        for put_back in reversed(restore):
            put_back()
    untimed = _apply_all(messages, args.batch)
    count = len(messages)
    print(f"{count} events, batches of {args.batch}: CPU per event of the writer thread")
    figures = {
        label: seconds / count * 1e6
        for label, seconds in sorted(spent.items(), key=lambda item: -item[1])
    }
    inside = whole["in the transaction"]
    figures["Accepted objects, grouping"] = (inside - sum(spent.values())) / count * 1e6
    figures["COMMIT, seen-id index, gaps"] = (total - inside) / count * 1e6
    for label, micros in figures.items():
        print(f"  {label}: {micros:.2f} us")
    figures["total"] = total / count * 1e6
    figures["total without the timers"] = untimed / count * 1e6
    print(f"  total: {figures['total']:.2f} us")
    # Two clock reads per decode and per step: the figures above include them.
    print(f"  total without the timers: {figures['total without the timers']:.2f} us")
    return figures


def _apply_all(messages: list[RawMessage], batch: int) -> float:
    """Apply ``messages`` in batches of ``batch`` to a new file; the CPU seconds it took."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "steps.duckdb", memory_limit=MEMORY_LIMIT, threads=1)
        started = time.thread_time()
        for first in range(0, len(messages), batch):
            store.apply_batch(messages[first : first + batch])
        spent = time.thread_time() - started
        store.close()
    return spent


def arguments() -> argparse.ArgumentParser:
    """The command line: at least one event and one per batch, or a clear error."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=bounded(int, 1, 100_000_000), default=200_000)
    parser.add_argument("--batch", type=bounded(int, 1, 10_000_000), default=20_000)
    return parser


if __name__ == "__main__":
    main(arguments().parse_args())
