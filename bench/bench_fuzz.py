"""Fuzz throughput: mutated messages mixed with valid traffic through the real materializer.

Run: ``.venv/bin/python -m bench.bench_fuzz [--mutated 1000000] [--valid 500000]``.

Valid traffic is the simulator's (with duplicates and out-of-order events); between its
messages go mutations of them that can never be valid (cut short, an invalid UTF-8 byte,
a value outside the limits, a wrong type, a missing field, nesting past the limit, a
4,300-digit number, the wrong subject, an unknown type, and the poison payloads that once
crashed the decoder). Everything is published to a real nats-server stream, then an
in-process materializer applies it to an empty DuckDB file. Reported: events/s (with the
valid traffic alone through the same materializer as the baseline of the same run),
rejects by reason, and whether every named query over the valid part equals the
simulator's independent expectation (``pulse_bi.simulator.expected``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import nats

from bench.bench_ingest import machine
from bench.paging import query_all
from materializer.app import Materializer
from materializer.settings import Settings
from materializer.store import Store
from pulse_bi.natsserver import LocalNatsServer
from pulse_bi.simulator import generate, publish
from pulse_bi.simulator.events import SimMessage
from pulse_bi.simulator.expected import expected_aggregates
from pulse_bi.streams import ensure_stream

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AS_OF = date(2026, 11, 25)
ALL_TIME = {"from": "1970-01-01T00:00:00+00:00", "to": "2200-01-01T00:00:00+00:00"}

_decode = msgspec.json.Decoder(float_hook=Decimal).decode
_encode = msgspec.json.Encoder(decimal_format="number").encode
_DIGITS = msgspec.Raw(b"9" * 4300)
POISON = [
    b"[",
    b"0x",
    b"1 2",
    b"[1,",
    b"",
    b"[" * 1000 + b"]" * 1000,
    b'{"specversion":"1.0","type":"order.created","x":' + b"1" * 4300 + b"}",
    b"\x00",
    b"null",
]
#: Values out of the contract's limits (docs/EVENTS.md, "Limits") per kind of field.
OUT_OF_RANGE: dict[str, list[Any]] = {
    "money": ["10000000000000000.00", "-1e16", "1.001", "NaN"],
    "int": [1_000_000_001, -1_000_000_001, 2**63],
    "id": ["", "x" * 257],
    "time": ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00", "2200-01-01T00:00:00Z"],
}
_MONEY = {"total_amount", "amount", "unit_cost"}
_INTS = {"quantity_delta", "reorder_point"}
_IDS = {"order_id", "customer_id", "invoice_id", "payment_id", "sku", "warehouse", "channel"}
#: Every field of the contract's data is required except an invoice's order_id.
_OPTIONAL = {"order_id"}


class Mutator:
    """Turns valid messages into messages that can never be valid, counting each kind."""

    def __init__(self, seed: int, valid: list[SimMessage]) -> None:
        self.rng = random.Random(f"fuzz-{seed}")
        self.valid = valid
        self.kinds: Counter[str] = Counter()
        self.subjects = sorted({m.subject for m in valid})

    def next(self) -> SimMessage:
        """One mutated message, published without Nats-Msg-Id (the stream keeps all)."""
        rng = self.rng
        source = rng.choice(self.valid)
        kind = rng.choice(
            [
                "cut short",
                "invalid UTF-8",
                "out of range",
                "wrong type",
                "missing field",
                "too deep",
                "4,300-digit number",
                "wrong subject",
                "unknown type",
                "poison",
            ]
        )
        subject, data = source.subject, source.data
        if kind == "cut short":
            data = data[: rng.randrange(len(data))]
        elif kind == "invalid UTF-8":
            at = rng.randrange(len(data) + 1)
            data = data[:at] + b"\xff" + data[at:]
        elif kind == "poison":
            data = rng.choice(POISON)
        elif kind == "wrong subject":
            subject = rng.choice([s for s in self.subjects if s != subject])
        else:
            data = _encode(self._edit(kind, _decode(data)))
        self.kinds[kind] += 1
        return SimMessage(subject, data, None, "bad", kind)

    def _edit(self, kind: str, document: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        fields = document["data"]
        if kind == "unknown type":
            document["type"] = "order.refunded"
        elif kind == "too deep":
            nested: list[Any] = []
            for _ in range(70):  # past the 64 levels of the limit
                nested = [nested]
            fields["extension"] = nested
        elif kind == "missing field":
            required = [name for name in fields if name not in _OPTIONAL]
            del fields[rng.choice(required)]
        elif kind == "wrong type":
            name = rng.choice(sorted(fields))
            # Any JSON type but the field's own (an order's lines may well be []).
            others = [value for value in ([], {}, True) if type(value) is not type(fields[name])]
            fields[name] = rng.choice(others)
        elif kind == "4,300-digit number":
            numbers = sorted((_MONEY | _INTS) & set(fields))
            if numbers:
                fields[rng.choice(numbers)] = _DIGITS
            else:
                document["time"] = _DIGITS
        else:  # out of range
            choices = [("time", document)]
            choices += [("id", document)] if rng.random() < 0.3 else []
            choices += [(name, fields) for name in fields if name in _MONEY | _INTS | _IDS]
            name, where = rng.choice(choices)
            group = (
                "money"
                if name in _MONEY
                else "int"
                if name in _INTS
                else "time"
                if name == "time"
                else "id"
            )
            where[name] = rng.choice(OUT_OF_RANGE[group])
        return document


def mixed(valid: list[SimMessage], mutator: Mutator, mutated: int) -> Iterator[SimMessage]:
    """The valid messages in order with ``mutated`` mutations spread evenly between them."""
    total = len(valid) + mutated
    sent_valid = 0
    for index in range(total):
        # Bresenham: a valid message whenever its share of the run is due.
        if sent_valid < len(valid) and (sent_valid + 1) * total <= (index + 1) * len(valid):
            yield valid[sent_valid]
            sent_valid += 1
        else:
            yield mutator.next()


async def fill(url: str, messages: Iterator[SimMessage] | list[SimMessage]) -> tuple[int, float]:
    """Publish to a fresh stream; the stream's last sequence and the seconds it took."""
    nc = await nats.connect(url)
    await ensure_stream(nc.jetstream())
    started = time.perf_counter()
    stats = await publish(nc, messages, ack_every=16, ack_timeout=120)
    elapsed = time.perf_counter() - started
    await nc.drain()
    return stats.stored, elapsed


async def ingest(url: str, path: Path, last: int) -> float:
    """Events/s of a materializer applying the whole stream to an empty file."""
    started = time.perf_counter()
    async with Materializer(Settings(nats_url=url, duckdb_path=path, http_port=0)) as running:
        await running.wait_for_sequence(last, timeout=7200)
        elapsed = time.perf_counter() - started
        assert running.ingestor is not None and running.ingestor.failed is None
    return last / elapsed


def compare(path: Path, expected: dict[str, Any]) -> list[str]:
    """Named queries of the file against the expectation; the names that differ."""
    store = Store.open(path)
    try:
        as_of = {"as_of": AS_OF.isoformat()}
        actual = {
            "sales_by_hour": query_all(store, "sales_by_hour", ALL_TIME),
            "sales_by_hour_by_channel": {
                channel: query_all(store, "sales_by_hour", {**ALL_TIME, "channel": channel})
                for channel in expected["sales_by_hour_by_channel"]
            },
            "stock_levels": query_all(store, "stock_levels", {}),
            "low_stock": query_all(store, "low_stock", {}),
            "ar_aging": query_all(store, "ar_aging", as_of),
            "overdue_invoices": query_all(store, "overdue_invoices", as_of),
            "top_products": store.query("top_products", {**ALL_TIME, "limit": 10}).wire,
        }
    finally:
        store.close()
    return [name for name, value in actual.items() if value != expected[name]]


#: Quoted values and numbers of a reason, so that reasons group by kind ("UTF-8" stays).
_QUOTED = re.compile(r"'[^']*'|(?<![\w-])\d+")


def rejects_by_reason(path: Path) -> tuple[Counter[str], dict[str, int]]:
    """Stored rejects grouped by the kind of reason, and the pipeline counters."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        reasons = conn.execute("SELECT reason FROM rejected_events").fetchall()
        row = conn.execute(
            "SELECT events_applied, events_rejected, events_duplicate FROM pipeline_state"
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    grouped: Counter[str] = Counter()
    for (reason,) in reasons:
        head = reason.split(": ", 2)
        label = ": ".join(head[:2]) if head[0] in ("invalid JSON", "not a CloudEvent") else head[0]
        grouped[_QUOTED.sub("…", label)[:70]] += 1
    return grouped, {"applied": row[0], "rejected": row[1], "duplicates": row[2]}


async def main(args: argparse.Namespace) -> None:
    scenario = generate(args.seed, args.valid, duplicates=0.02, out_of_order=0.05, end=END)
    expected = expected_aggregates(scenario.messages, as_of=AS_OF)
    counts = expected["counts"]
    mutator = Mutator(args.seed, [m for m in scenario.messages if m.kind == "event"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = LocalNatsServer(store_dir=root / "nats").start()
        try:
            stored, publish_seconds = await fill(
                server.url, mixed(scenario.messages, mutator, args.mutated)
            )
            rate = await ingest(server.url, root / "fuzz.duckdb", stored)
        finally:
            server.stop()
        baseline = None
        if args.baseline:
            server = LocalNatsServer(store_dir=root / "nats-valid").start()
            try:
                valid_stored, _ = await fill(server.url, scenario.messages)
                baseline = await ingest(server.url, root / "valid.duckdb", valid_stored)
            finally:
                server.stop()
        reasons, pipeline = rejects_by_reason(root / "fuzz.duckdb")
        differing = compare(root / "fuzz.duckdb", expected)

    mutated = sum(mutator.kinds.values())
    print(f"machine: {machine()}")
    print(
        f"stream: {stored:,} messages = {counts['in_stream']:,} valid traffic "
        f"({counts['applied']:,} events, {counts['duplicates']:,} duplicates) "
        f"+ {mutated:,} mutated; published in {publish_seconds:.0f} s"
    )
    print(f"ingest, mixed stream: {rate:,.0f} messages/s")
    if baseline is not None:
        print(f"ingest, valid traffic alone (baseline, same run): {baseline:,.0f} messages/s")
    print("mutations: " + ", ".join(f"{k} {v:,}" for k, v in sorted(mutator.kinds.items())))
    print("rejects by reason:")
    for reason, count in reasons.most_common():
        print(f"  {count:>9,}  {reason}")
    want = {
        "applied": counts["applied"],
        "rejected": counts["rejected"] + mutated,
        "duplicates": counts["duplicates"],
    }
    print(f"counts: {pipeline} (expected {want})")
    ok = pipeline == want and not differing
    print(
        "aggregates of the valid part: "
        + ("equal to the expectation" if not differing else f"DIFFER in {differing}")
    )
    print("result: " + ("OK" if ok else "MISMATCH"))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutated", type=int, default=1_000_000)
    parser.add_argument("--valid", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    asyncio.run(main(parser.parse_args()))
