"""Receivables reads against history: do `ar_aging` and `overdue_invoices` cost in
proportion to the open items or to every invoice ever issued?

    python -m bench.bench_receivables --invoices 400000 --steps 4

Fills a store with invoices and their payments only, in the simulator's proportions
(pulse_bi/simulator/world.py: half paid in one payment, one in eight in two, one in
eight partly paid, a quarter never paid), so the open items are a fixed share (3/8) of
the history. After each step it times both queries (median wall and CPU time of
``--repeat`` runs) and prints the invoices issued, the open items and the rows of the
``invoices`` table. ``ar_aging`` is timed as the API's default asks it (100 customers)
and with ``customer_limit`` 0 (the overall buckets alone, as a query without
``byCustomer`` asks it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec

from materializer.db import MEMORY_LIMIT
from materializer.store import RawMessage, Store

AS_OF = date(2026, 11, 25)


def generate(invoices: int, *, seed: int = 3, start: int = 1) -> Iterator[RawMessage]:
    """Invoices over the 180 days before AS_OF, each followed by its payments."""
    rng = random.Random(seed)
    encode = msgspec.json.encode
    sequence = start
    first_day = AS_OF - timedelta(days=180)

    def message(kind: str, event_type: str, data: dict[str, object]) -> RawMessage:
        nonlocal sequence
        payload = encode(
            {
                "specversion": "1.0",
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "source": "/bench",
                "type": event_type,
                "time": "2026-11-25T10:00:00Z",
                "datacontenttype": "application/json",
                "data": data,
            }
        )
        sequence += 1
        return RawMessage(sequence - 1, kind, payload, datetime(2026, 11, 25, tzinfo=UTC))

    for index in range(invoices):
        invoice_id = f"I-{seed}-{index}"
        cents = rng.randint(1000, 500000)
        issued = first_day + timedelta(days=180 * index // max(invoices, 1))
        yield message(
            "pulse.events.invoices.issued",
            "invoice.issued",
            {
                "invoice_id": invoice_id,
                "customer_id": f"C-{rng.randrange(20000):05d}",
                "amount": f"{cents / 100:.2f}",
                "issued_on": issued.isoformat(),
                "due_date": (issued + timedelta(days=30)).isoformat(),
            },
        )
        roll = rng.random()
        if roll < 0.5:
            payments = [cents]
        elif roll < 0.75:
            first = rng.randint(cents // 5, cents * 4 // 5)
            payments = [first, cents - first] if roll < 0.625 else [first]
        else:
            payments = []
        for number, amount in enumerate(payments):
            yield message(
                "pulse.events.payments.received",
                "payment.received",
                {
                    "payment_id": f"P-{invoice_id}-{number}",
                    "invoice_id": invoice_id,
                    "amount": f"{amount / 100:.2f}",
                },
            )


def timed(store: Store, name: str, params: dict[str, object], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time (ms) of ``repeat`` runs of one named query.

    CPU time of this process (DuckDB's one thread included): on a shared machine wall
    time measures the neighbours too, CPU time mostly does not.
    """
    wall, cpu = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        store.query(name, params)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    """Fill in steps and time the receivables reads after each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=400_000)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20_000, help="events per batch")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--memory-limit", default=MEMORY_LIMIT)
    parser.add_argument(
        "--no-buckets-alone",
        dest="buckets_alone",
        action="store_false",
        help="skip timing ar_aging with customer_limit 0 (for code that predates it)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = Store.open(
            Path(scratch) / "bench.duckdb", memory_limit=args.memory_limit, threads=1
        )
        messages = generate(args.invoices)
        per_step = args.invoices // args.steps
        params: dict[str, object] = {"as_of": AS_OF.isoformat()}
        for step in range(1, args.steps + 1):
            pending: list[RawMessage] = []
            issued = 0
            for message in messages:
                pending.append(message)
                issued += message.subject.endswith("issued")
                if len(pending) >= args.batch:
                    store.apply_batch(pending)
                    pending = []
                if issued >= per_step:
                    break
            # The payments of the step's last invoices belong to it too.
            store.apply_batch(pending)
            store.checkpoint(force=True)
            aging = timed(store, "ar_aging", params, args.repeat)
            alone = (
                timed(store, "ar_aging", {**params, "customer_limit": 0}, args.repeat)
                if args.buckets_alone
                else None
            )
            overdue = timed(store, "overdue_invoices", {**params, "limit": 100}, args.repeat)
            rows, open_items = store.read(
                lambda cur: cur.execute(
                    "SELECT count(*), count(*) FILTER (WHERE paid < amount) FROM invoices"
                ).fetchall()[0]
            )
            alone_text = (
                f"without customers {alone[0]:.1f} ms wall, {alone[1]:.1f} ms CPU; "
                if alone
                else ""
            )
            print(
                f"{step * per_step:>9,} invoices, {store.last_sequence():>9,} events: "
                f"open {open_items:,}, invoices table {rows:,} rows; "
                f"ar_aging median {aging[0]:.1f} ms wall, {aging[1]:.1f} ms CPU; {alone_text}"
                f"overdue_invoices (first 100) {overdue[0]:.1f} ms wall, {overdue[1]:.1f} ms CPU",
                flush=True,
            )
        store.close()


if __name__ == "__main__":
    main()
