"""Micro-benchmark of ``Store.apply_batch`` without NATS: events/s on a generated mix.

    python bench/bench_apply.py --events 200000 --batch 10000
    python bench/bench_apply.py --events 300000 --batch 20000 --latency 500 --latency-batch 20

With ``--latency N`` the run then applies N more batches of ``--latency-batch`` events
to the file it filled (the live case: small batches on a large history) and prints the
p50/p99/max of one ``apply_batch`` call.

Messages are generated up front (a realistic mix of every event type, a few percent
of cancellations and payments, some bad input), so the figure is the store alone:
decode, validate, SQL, commit. Prints events/s and the process RSS at the end.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psutil

from materializer.store import RawMessage, Store

CHANNELS = ("web", "shop", "phone", "marketplace")
WAREHOUSES = ("W1", "W2", "W3")
REASONS = ("receipt", "shipment", "adjustment", "return")


def generate(
    count: int, *, seed: int = 7, start_sequence: int = 1, sites: int = 0
) -> Iterator[RawMessage]:
    """A stream of ``count`` messages in stream order; about 1 % bad input. With
    ``sites``, each message carries one of that many sites, taken at random."""
    rng = random.Random(seed)
    site_rng = random.Random(seed + 1)  # apart, so the event mix is the same with sites
    encode = msgspec.json.encode
    clock = datetime(2026, 11, 25, tzinfo=UTC)
    step = timedelta(milliseconds=20)
    # Recent ids only: cancellations and payments refer to recent orders and invoices,
    # and the generator must not grow with the run (RSS is part of the result).
    orders: deque[str] = deque(maxlen=5000)
    invoices: deque[str] = deque(maxlen=5000)
    data: dict[str, object]
    skus = [f"SKU-{n:05d}" for n in range(2000)]
    customers = [f"C-{n:06d}" for n in range(20000)]
    for offset in range(count):
        sequence = start_sequence + offset
        clock += step
        roll = rng.random()
        if roll < 0.40:
            order_id = f"O-{sequence}"
            orders.append(order_id)
            cents = [(rng.randint(1, 5), rng.randint(100, 99999)) for _ in range(rng.randint(1, 4))]
            lines = [
                {"sku": rng.choice(skus), "quantity": quantity, "unit_price": f"{price / 100:.2f}"}
                for quantity, price in cents
            ]
            total = sum(quantity * price for quantity, price in cents) / 100
            kind, data = (
                "orders.created",
                {
                    "order_id": order_id,
                    "customer_id": rng.choice(customers),
                    "channel": rng.choice(CHANNELS),
                    "total_amount": f"{total:.2f}",
                    "lines": lines,
                },
            )
        elif roll < 0.43 and orders:
            kind, data = "orders.cancelled", {"order_id": rng.choice(orders), "reason": "x"}
        elif roll < 0.73:
            kind, data = (
                "stock.moved",
                {
                    "sku": rng.choice(skus),
                    "warehouse": rng.choice(WAREHOUSES),
                    "quantity_delta": rng.randint(-20, 50),
                    "reason": rng.choice(REASONS),
                },
            )
        elif roll < 0.83:
            invoice_id = f"I-{sequence}"
            invoices.append(invoice_id)
            issued = clock.date()
            kind, data = (
                "invoices.issued",
                {
                    "invoice_id": invoice_id,
                    "customer_id": rng.choice(customers),
                    "amount": f"{rng.randint(1000, 500000) / 100:.2f}",
                    "issued_on": issued.isoformat(),
                    "due_date": (issued + timedelta(days=30)).isoformat(),
                },
            )
        elif roll < 0.93 and invoices:
            kind, data = (
                "payments.received",
                {
                    "payment_id": f"P-{sequence}",
                    "invoice_id": rng.choice(invoices),
                    "amount": f"{rng.randint(100, 100000) / 100:.2f}",
                },
            )
        elif roll < 0.97:
            kind, data = (
                "products.updated",
                {
                    "sku": rng.choice(skus),
                    "name": "Product",
                    "category": "general",
                    "reorder_point": rng.randint(0, 30),
                    "unit_cost": "3.20",
                },
            )
        else:
            kind, data = (
                "customers.updated",
                {"customer_id": rng.choice(customers), "name": "Customer"},
            )
        domain, action = kind.split(".")
        event_type = f"{domain.removesuffix('s')}.{action}" if domain != "stock" else kind
        payload = encode(
            {
                "specversion": "1.0",
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "source": f"/{domain}",
                "type": event_type,
                "time": clock.isoformat(),
                "datacontenttype": "application/json",
                "data": data,
            }
        )
        if rng.random() < 0.01:
            payload = payload[:-7]  # bad input: truncated JSON
        site = f"wh{site_rng.randrange(sites)}" if sites else None
        yield RawMessage(sequence, f"pulse.events.{kind}", payload, clock, site)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to apply")
    parser.add_argument("--batch", type=int, default=10_000, help="events per batch")
    parser.add_argument("--path", type=Path, default=None, help="DuckDB file (default: temp)")
    parser.add_argument("--memory-limit", default="256MB", help="DuckDB memory_limit")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument(
        "--latency", type=int, default=0, help="small batches to time after the bulk run"
    )
    parser.add_argument("--latency-batch", type=int, default=20, help="events per small batch")
    parser.add_argument(
        "--sites", type=int, default=0, help="sites the events come from (0: no Pulse-Site)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.path or Path(scratch) / "bench.duckdb"
        store = Store.open(path, memory_limit=args.memory_limit, threads=args.threads)
        process = psutil.Process()
        applied = 0
        elapsed = 0.0
        # CPU seconds of this process (all threads): on a shared machine wall time
        # measures the neighbours too, CPU time mostly does not.
        cpu = 0.0
        messages = generate(
            args.events + args.latency * args.latency_batch,
            start_sequence=store.last_sequence() + 1,
            sites=args.sites,
        )
        remaining = args.events
        while True:
            size = min(args.batch, remaining)
            batch = [message for _, message in zip(range(size), messages, strict=False)]
            if not batch:
                break
            remaining -= len(batch)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = store.apply_batch(batch)
            elapsed += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            applied += len(batch)
            if result.last_sequence % (args.batch * 20) < args.batch:
                duckdb_bytes = store.conn.execute(
                    "SELECT sum(memory_usage_bytes) FROM duckdb_memory()"
                ).fetchone()
                print(
                    f"{applied:>10,} events  {applied / elapsed:>10,.0f} events/s  "
                    f"RSS {process.memory_info().rss / 2**20:.0f} MB  "
                    f"DuckDB {(duckdb_bytes[0] if duckdb_bytes else 0) / 2**20:.0f} MB",
                    flush=True,
                )
        latencies = []
        for _ in range(args.latency):
            batch = [m for _, m in zip(range(args.latency_batch), messages, strict=False)]
            started = time.perf_counter()
            store.apply_batch(batch)
            latencies.append(time.perf_counter() - started)
        stats = store.stats()
        store.close()
        print(
            f"apply_batch: {applied:,} events in {elapsed:.2f} s = {applied / elapsed:,.0f} "
            f"events/s (batch {args.batch:,}), {applied / cpu:,.0f} events per CPU-second; "
            f"applied {stats['events_applied']:,}, "
            f"rejected {stats['events_rejected']:,}; RSS "
            f"{process.memory_info().rss / 2**20:.0f} MB"
        )
        if latencies:
            latencies.sort()
            p50 = latencies[len(latencies) // 2]
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"latency: {len(latencies)} batches of {args.latency_batch} events after "
                f"{args.events:,}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
                f"max {latencies[-1] * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
