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
from collections import defaultdict, deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psutil

from materializer import db
from materializer.store import RawMessage, Store

CHANNELS = ("web", "shop", "phone", "marketplace")
WAREHOUSES = ("W1", "W2", "W3")
REASONS = ("receipt", "shipment", "adjustment", "return")


def generate(
    count: int,
    *,
    seed: int = 7,
    start_sequence: int = 1,
    sites: int = 0,
    duplicates: float = 0.0,
) -> Iterator[RawMessage]:
    """A stream of ``count`` messages in stream order; about 1 % bad input. With
    ``sites``, each message carries one of that many sites, taken at random; the share
    ``duplicates`` re-sends one of the last 48 messages (as the simulator does)."""
    rng = random.Random(seed)
    site_rng = random.Random(seed + 1)  # apart, so the event mix is the same with sites
    resend = random.Random(seed + 1)  # its own stream: the other messages stay the same
    recent: deque[tuple[str, bytes, str | None]] = deque(maxlen=48)
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
        if duplicates and recent and resend.random() < duplicates:
            subject, again, site = recent[resend.randrange(len(recent))]
            yield RawMessage(sequence, subject, again, clock, site)
            continue
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
        recent.append((f"pulse.events.{kind}", payload, site))
        yield RawMessage(sequence, f"pulse.events.{kind}", payload, clock, site)


class TimedConnection:
    """The store's connection with the time of every statement summed by its text.

    DuckDB finds the Arrow tables a statement names in the caller's frame; through this
    wrapper the caller is one frame further up, so ``python_scan_all_frames`` is set.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        conn.execute("SET python_scan_all_frames = true")
        self.seconds: dict[str, float] = defaultdict(float)
        #: CPU time of the calling thread (DuckDB with one thread runs the statement on
        #: it): on a busy machine wall time measures the neighbours too.
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _timed(self, method: str, sql: str, *args: Any) -> Any:
        key = " ".join(sql.split())[:70]
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return getattr(self._conn, method)(sql, *args)
        finally:
            self.seconds[key] += time.perf_counter() - started
            self.cpu[key] += time.thread_time() - cpu_started
            self.calls[key] += 1

    def execute(self, sql: str, *args: Any) -> Any:
        """Run and time one statement."""
        return self._timed("execute", sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        """Run and time one statement over many parameter sets."""
        return self._timed("executemany", sql, *args)

    def report(self, batches: int) -> None:
        """Print the mean wall and CPU time per batch of each statement, costliest first."""
        print(f"  {sum(self.cpu.values()) / batches * 1000:8.2f} ms CPU per batch in SQL, of:")
        for key, cpu in sorted(self.cpu.items(), key=lambda item: -item[1]):
            wall, calls = self.seconds[key] / batches * 1000, self.calls[key]
            print(
                f"  {cpu / batches * 1000:8.2f} ms CPU {wall:8.2f} ms wall {calls:>6} calls  {key}"
            )


def seen_index_bytes(store: Store) -> int:
    """Bytes of the store's in-memory seen-id index (numpy arrays; not the recent ids)."""
    seen = store._seen
    return int(seen.events.nbytes + seen.keys.nbytes)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to apply")
    parser.add_argument("--batch", type=int, default=10_000, help="events per batch")
    parser.add_argument("--path", type=Path, default=None, help="DuckDB file (default: temp)")
    parser.add_argument("--memory-limit", default="256MB", help="DuckDB memory_limit")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument(
        "--checkpoint-threshold",
        default=db.CHECKPOINT_THRESHOLD,
        help="WAL size at which DuckDB checkpoints (DUCKDB_CHECKPOINT_THRESHOLD)",
    )
    parser.add_argument(
        "--latency", type=int, default=0, help="small batches to time after the bulk run"
    )
    parser.add_argument("--latency-batch", type=int, default=20, help="events per small batch")
    parser.add_argument(
        "--sites", type=int, default=0, help="sites the events come from (0: no Pulse-Site)"
    )
    parser.add_argument(
        "--duplicates", type=float, default=0.0, help="share of re-sent recent messages"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="time every SQL statement of the small batches and print them per batch",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.path or Path(scratch) / "bench.duckdb"
        store = Store.open(path, memory_limit=args.memory_limit, threads=args.threads)
        db.set_checkpoint_threshold(store.conn, args.checkpoint_threshold)
        process = psutil.Process()
        applied = 0
        elapsed = 0.0
        # CPU seconds of this process (all threads): on a shared machine wall time
        # measures the neighbours too, CPU time mostly does not.
        cpu = 0.0
        messages = generate(
            args.events + args.latency * args.latency_batch,
            start_sequence=store.last_sequence() + 1,
            duplicates=args.duplicates,
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
        cpu_latencies = []
        timed = None
        if args.profile:
            # The store runs each batch on the connection its optimizer switch holds.
            timed = TimedConnection(store.conn)
            store._optimizer.conn = timed  # type: ignore[assignment]
        for _ in range(args.latency):
            batch = [m for _, m in zip(range(args.latency_batch), messages, strict=False)]
            started, cpu_started = time.perf_counter(), time.process_time()
            store.apply_batch(batch)
            latencies.append(time.perf_counter() - started)
            cpu_latencies.append(time.process_time() - cpu_started)
        if timed is not None:
            store._optimizer.conn = timed._conn
        stats = store.stats()
        memory = process.memory_full_info()
        index = seen_index_bytes(store)
        store.close()
        print(
            f"apply_batch: {applied:,} events in {elapsed:.2f} s = {applied / elapsed:,.0f} "
            f"events/s (batch {args.batch:,}), {applied / cpu:,.0f} events per CPU-second; "
            f"applied {stats['events_applied']:,}, "
            f"rejected {stats['events_rejected']:,}; RSS {memory.rss / 2**20:.0f} MB, "
            f"USS {memory.uss / 2**20:.0f} MB (private), seen-id index {index / 2**20:.0f} MB"
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
            cpu_latencies.sort()
            cpu50 = cpu_latencies[len(cpu_latencies) // 2]
            cpu99 = cpu_latencies[min(len(cpu_latencies) - 1, int(len(cpu_latencies) * 0.99))]
            print(f"CPU per batch: p50 {cpu50 * 1000:.1f} ms, p99 {cpu99 * 1000:.1f} ms")
        if timed is not None:
            timed.report(len(latencies))


if __name__ == "__main__":
    main()
