"""Decoding in DuckDB's SQL against ``events.decode``: CPU per event, and the GIL.

Run: ``PYTHONPATH=. .venv/bin/python -m bench.bench_sql_decode [--events 100000]
[--batch 20000] [--rounds 3] [--threads 2]``. The simulator's stream (the one
``bench_ingest`` publishes and ``bench_write_steps`` applies) is decoded three ways,
each round, on one thread:

- ``events.decode`` per message, as the writer does today (msgspec, under the GIL);
- ``bench.sql_decode``: each batch as one Arrow column, decoded and validated by SQL
  into typed tables, with the CPU of each of its statements;
- the floor of any SQL decode: the same Arrow column and one ``from_json`` per document
  into the envelope's fields, with no check at all.

DuckDB runs with one thread, so its work is counted in the calling thread's CPU. Then a
probe thread counts loop turns while each decode runs: its rate against its rate while
the main thread sleeps says what share of the time the decode leaves the GIL free (~1.0
outside it; ~0.5 when both threads want it, the interpreter switching every 5 ms).
Last, with ``--threads`` above 1, the SQL decode runs again on that many DuckDB threads:
its wall time per event, and the CPU of all the process's threads. Nothing is written to
a file: the writer's own share is ``bench_write_steps``'.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import duckdb

from bench import sql_decode
from bench.bench_gateway import bounded
from materializer import events
from pulse_bi.simulator import generate

#: The floor: the envelope's fields and ``data`` left as JSON text, nothing checked.
_ENVELOPE_JSON = (
    '{"specversion":"VARCHAR","id":"VARCHAR","source":"VARCHAR","type":"VARCHAR",'
    '"time":"VARCHAR","datacontenttype":"VARCHAR","data":"JSON"}'
)
FLOOR = (
    "CREATE OR REPLACE TEMP TABLE floor AS"
    f" SELECT sequence, from_json(doc, '{_ENVELOPE_JSON}') AS e FROM payloads"
)


def python_decode(subjects: list[str], payloads: list[bytes]) -> None:
    """What the writer does per message: ``events.decode``."""
    decode = events.decode
    for subject, payload in zip(subjects, payloads, strict=True):
        decode(subject, payload)


def sql_decode_all(
    conn: duckdb.DuckDBPyConnection,
    subjects: list[str],
    payloads: list[bytes],
    batch: int,
    spent: dict[str, float] | None = None,
) -> int:
    """``sql_decode.load`` batch by batch; how many events it proved valid."""
    proven = 0
    for first in range(0, len(payloads), batch):
        if sql_decode.load(
            conn, subjects[first : first + batch], payloads[first : first + batch], spent
        ):
            proven += sql_decode.proven_count(conn)
    return proven


def floor(
    conn: duckdb.DuckDBPyConnection, subjects: list[str], payloads: list[bytes], batch: int
) -> None:
    """The Arrow column and one ``from_json`` per document, batch by batch."""
    for first in range(0, len(payloads), batch):
        frame = sql_decode.frame(subjects[first : first + batch], payloads[first : first + batch])
        conn.register("payloads", frame)
        conn.execute(FLOOR)
        conn.unregister("payloads")


class Probe:
    """A thread counting loop turns, to see how much of the GIL another thread leaves."""

    def __init__(self) -> None:
        self.turns = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop:
            self.turns += 1

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()

    def rate(self, work: Callable[[], object], seconds: float = 0.5) -> float:
        """Turns per second while ``work`` runs, again until ``seconds`` have passed (the
        interpreter hands the GIL over every 5 ms: a shorter run says nothing)."""
        turns, started = self.turns, time.perf_counter()
        while True:
            work()
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return (self.turns - turns) / elapsed


def _cpu(work: Callable[[], object]) -> float:
    started = time.thread_time()
    work()
    return time.thread_time() - started


def main(args: argparse.Namespace) -> dict[str, float]:
    """Print the figures; return them (µs per event, and the probe's shares)."""
    messages = generate(7, args.events).messages
    subjects = [m.subject for m in messages]
    payloads = [m.data for m in messages]
    count = len(payloads)
    conn = duckdb.connect(config={"threads": 1, "autoload_known_extensions": False})
    conn.execute("SET TimeZone = 'UTC'")
    batch = args.batch
    figures: dict[str, float] = {}
    steps: dict[str, float] = {}
    proven = 0
    runs: dict[str, list[float]] = {"events.decode": [], "SQL decode": [], "SQL floor": []}
    for _ in range(args.rounds):
        runs["events.decode"].append(_cpu(lambda: python_decode(subjects, payloads)))
        round_steps: dict[str, float] = {}
        started = time.thread_time()
        proven = sql_decode_all(conn, subjects, payloads, batch, round_steps)
        runs["SQL decode"].append(time.thread_time() - started)
        if not steps or sum(round_steps.values()) < sum(steps.values()):
            steps = round_steps
        runs["SQL floor"].append(_cpu(lambda: floor(conn, subjects, payloads, batch)))
    print(f"{count} events, batches of {batch}, {args.rounds} rounds: CPU per event (best round)")
    for label, rounds in runs.items():
        figures[label] = min(rounds) / count * 1e6
        each = ", ".join(f"{s / count * 1e6:.2f}" for s in rounds)
        print(f"  {label}: {figures[label]:.2f} us  (rounds: {each})")
    figures["proven"] = proven / count
    print(
        f"  events the SQL proved valid (the rest would go to events.decode): {proven / count:.1%}"
    )
    print("  SQL decode by step (its best round):")
    for label, seconds in steps.items():
        print(f"    {label}: {seconds / count * 1e6:.2f} us")
    with Probe() as probe:
        idle = probe.rate(lambda: time.sleep(0.05))
        shares = {
            "events.decode": probe.rate(lambda: python_decode(subjects, payloads)) / idle,
            "SQL decode": probe.rate(lambda: sql_decode_all(conn, subjects, payloads, batch))
            / idle,
        }
    print("  a probe thread's loop rate while each runs, against its rate alone:")
    for label, share in shares.items():
        figures[f"probe share, {label}"] = share
        print(f"    {label}: {share:.2f}")
    conn.close()
    if args.threads > 1:  # the same SQL spread over DuckDB's threads: wall time, all CPU
        wide = duckdb.connect(config={"threads": args.threads, "autoload_known_extensions": False})
        wide.execute("SET TimeZone = 'UTC'")
        timings = []
        for _ in range(args.rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            sql_decode_all(wide, subjects, payloads, batch)
            timings.append((time.perf_counter() - wall, time.process_time() - cpu))
        wide.close()
        wall, cpu = min(timings)
        figures[f"SQL decode on {args.threads} threads, wall"] = wall / count * 1e6
        figures[f"SQL decode on {args.threads} threads, CPU"] = cpu / count * 1e6
        print(
            f"  SQL decode on {args.threads} DuckDB threads (best round): "
            f"{wall / count * 1e6:.2f} us wall, {cpu / count * 1e6:.2f} us CPU of all threads"
        )
    return figures


def arguments() -> argparse.ArgumentParser:
    """The command line: at least one event, one per batch and one round."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=bounded(int, 1, 10_000_000), default=100_000)
    parser.add_argument("--batch", type=bounded(int, 1, 1_000_000), default=20_000)
    parser.add_argument("--rounds", type=bounded(int, 1, 100), default=3)
    parser.add_argument(
        "--threads",
        type=bounded(int, 1, 64),
        default=2,
        help="DuckDB threads for a last run of the SQL decode (1: no such run)",
    )
    return parser


if __name__ == "__main__":
    main(arguments().parse_args())
