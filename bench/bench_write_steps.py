"""Where the writer thread's CPU goes: CPU time per event of each step of a batch.

Run: ``.venv/bin/python -m bench.bench_write_steps [--events 200000] [--batch 20000]``.
The simulator's stream (the one ``bench_ingest`` publishes) is applied to an empty
DuckDB file with the default settings (``DUCKDB_MEMORY_LIMIT``, one DuckDB thread, so
DuckDB's work is counted in the calling thread), and the CPU time of this thread is
summed around each step of ``Store.apply_batch``: decoding, each aggregate's ``apply``,
the seen-id and key look-up, the pipeline record. No NATS: the consumer's share is
``bench_ingest``'s.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from materializer import events
from materializer.aggregates import AGGREGATES, pipeline
from materializer.db import MEMORY_LIMIT
from materializer.store import RawMessage, Store
from pulse_bi.simulator import generate


def timed(
    owner: Any,
    name: str,
    label: str,
    spent: Counter[str],
    clock: Callable[[], float] = time.thread_time,
) -> None:
    """Replace ``owner.name`` by a wrapper adding the time it takes by ``clock`` (the
    thread's CPU time unless told) to ``spent[label]``."""
    inner: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] += clock() - started

    setattr(owner, name, wrapper)


def main(args: argparse.Namespace) -> None:
    received = datetime.now(UTC)
    messages = [
        RawMessage(sequence, m.subject, m.data, received)
        for sequence, m in enumerate(generate(7, args.events).messages, start=1)
    ]
    spent: Counter[str] = Counter()
    for module in AGGREGATES:
        timed(module, "apply", module.__name__.rsplit(".", 1)[-1], spent)
    timed(pipeline, "record", "rejects and pipeline state", spent)
    timed(events, "decode", "decode and validate", spent)
    timed(Store, "_resolve_keys", "seen ids and keys", spent)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "steps.duckdb", memory_limit=MEMORY_LIMIT, threads=1)
        started = time.thread_time()
        for first in range(0, len(messages), args.batch):
            store.apply_batch(messages[first : first + args.batch])
        total = time.thread_time() - started
        store.close()
    count = len(messages)
    print(f"{count} events, batches of {args.batch}: CPU per event of the writer thread")
    for label, seconds in spent.most_common():
        print(f"  {label}: {seconds / count * 1e6:.2f} us")
    rest = total - sum(spent.values())
    print(f"  the rest (Accepted objects, grouping, COMMIT): {rest / count * 1e6:.2f} us")
    print(f"  total: {total / count * 1e6:.2f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000)
    main(parser.parse_args())
