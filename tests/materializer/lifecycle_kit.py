"""Helpers of the backup, restore, archive and rebuild tests: table contents of two
DuckDB files compared, reference replays, and the CLI run as a separate process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import duckdb
import nats

from materializer import archive, db, events, replay
from materializer.aggregates import FOLDED, deltas, staged
from materializer.aggregates.pipeline import PIPELINE_STATE
from materializer.app import Materializer
from materializer.seen import SeenIndex
from materializer.settings import Settings
from materializer.store import RawMessage, Store
from pulse_bi.contract import QUERIES
from pulse_bi.simulator import Scenario, generate, publish
from pulse_bi.streams import ensure_stream

#: Tables that say where a file stands rather than what it holds. ``seen_keys`` too: a
#: cancellation that arrives before its order in another batch leaves a "waiting" key
#: that the same two events in one batch do not, so its rows depend on batch sizes.
BOOKKEEPING = {
    "schema_migrations",
    "pipeline_state",
    "stream_identity",
    "archive_state",
    "seen_keys",
}
#: Pipeline counters two files that applied the same events agree on (not ``batches``).
COUNTERS = (
    "last_sequence, events_applied, events_rejected, events_duplicate, last_event_time,"
    " central_last_event_time"
)


def file_before(path: Path, version: int) -> duckdb.DuckDBPyConnection:
    """A connection to a new file at ``path`` with the migrations before ``version``."""
    conn = db.connect(path)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    for migration in db.available_migrations():
        if migration.version < version:
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                [migration.version, migration.name],
            )
    return conn


def contents(path: Path, *, raw: bool = True) -> dict[str, Any]:
    """Every table's rows (sorted) and the pipeline counters of the file at ``path``.

    ``raw=False`` leaves out the raw event tables (the archive takes their old rows).
    """
    conn = duckdb.connect(str(path), read_only=True)
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()
        ]
        out: dict[str, Any] = {}
        # How much of an aggregate waits in its delta depends on batch sizes; what it
        # holds does not (materializer/aggregates/deltas.py).
        for folded in FOLDED:
            if folded is not PIPELINE_STATE:  # its counters are compared below
                out[folded.name] = conn.execute(f"{folded.content_sql()} ORDER BY ALL").fetchall()
        split = {f"{f.name}_base" for f in FOLDED} | {deltas.DELTAS}
        # Likewise how many raw rows wait in ``raw_staged``: the raw tables are views.
        split |= {staged.STAGED, *(staged.base(t) for t in staged.TABLES)}
        for table in sorted([*tables, *staged.TABLES]):
            if table in BOOKKEEPING or table in split or (not raw and table in archive.RAW_TABLES):
                continue
            # The effect a cancellation had when it arrived ("pending" before its order,
            # "applied" with it in the same batch) depends on batch sizes; the sales
            # figures it leads to do not.
            columns = "* EXCLUDE (effect)" if table == "order_cancellations" else "*"
            out[table] = conn.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
        out["pipeline_state"] = conn.execute(f"SELECT {COUNTERS} FROM pipeline_state").fetchall()
        return out
    finally:
        conn.close()


def assert_same(left: dict[str, Any], right: dict[str, Any]) -> None:
    """Table by table, so a failure names the table."""
    assert sorted(left) == sorted(right)
    for table in left:
        assert left[table] == right[table], table


def seen_answers(path: Path, messages: list[RawMessage]) -> dict[str, Any]:
    """What the seen index of the file at ``path`` answers for every order and invoice
    id of ``messages``: the sequence that created each order and invoice, which orders
    are cancelled, which cancellations and payments still wait; and every seen event id.

    Keys a file keeps that decide nothing any more (a "waiting" key whose order or
    invoice came since: it exists or not depending on batch sizes) are not asked for.
    """
    orders: set[str] = set()
    arrived_orders: set[str] = set()
    invoices: set[str] = set()
    arrived_invoices: set[str] = set()
    for message in messages:
        decoded = events.decode(message.subject, message.data)
        if not isinstance(decoded, events.Event):
            continue
        data = decoded.data
        if decoded.type in ("order.created", "order.cancelled"):
            orders.add(data.order_id)
            if decoded.type == "order.created":
                arrived_orders.add(data.order_id)
        elif decoded.type in ("invoice.issued", "payment.received"):
            invoices.add(data.invoice_id)
            if decoded.type == "invoice.issued":
                arrived_invoices.add(data.invoice_id)
    conn = duckdb.connect(str(path), read_only=True)
    try:
        index = SeenIndex(conn)
        hashes = sorted(h for (h,) in conn.execute("SELECT h FROM seen_events").fetchall())
    finally:
        conn.close()
    created = index.find_keys([f"o:{o}" for o in sorted(orders)] + [f"i:{i}" for i in invoices])
    exist = [f"c:{o}" for o in orders]
    exist += [f"p:{o}" for o in orders - arrived_orders]
    exist += [f"q:{i}" for i in invoices - arrived_invoices]
    return {"created": created, "exist": sorted(index.find_keys(exist)), "events": hashes}


#: Parameters that make every named query answer about all of history.
ALL_TIME = {"from": "2000-01-01T00:00:00+00:00", "to": "2100-01-01T00:00:00+00:00"}


def answers(path: Path) -> dict[str, Any]:
    """Every named query's answer (first page) from the file at ``path``, without the
    pipeline fields that say when and in how many batches it was written."""
    store = Store.open(path)
    try:
        out = {}
        for spec in QUERIES:
            params = {**(ALL_TIME if spec.window else {})}
            if "as_of" in spec.clock:
                params["as_of"] = "2026-11-25"
            out[spec.name] = store.query(spec.name, params).wire
        for volatile in ("last_batch_at", "batches"):
            out["pipeline"].pop(volatile, None)
        return out
    finally:
        store.close()


async def reference(url: str, path: Path, upto: int | None = None) -> Path:
    """A fresh file replaying the stream from sequence 1 (to ``upto``) with the store."""
    nc = await nats.connect(url)
    store = Store.open(path)
    try:
        await replay.replay(store, nc.jetstream(), None, replay.Until(sequence=upto))
    finally:
        store.close()
        await nc.drain()
    return path


async def publish_scenario(url: str, count: int, seed: int) -> tuple[int, Scenario]:
    """Publish a seeded scenario (duplicates, bad events, late events); the stream's
    last sequence, and the scenario."""
    scenario = generate(seed, count, out_of_order=0.05, duplicates=0.02, bad=0.01)
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js)
    await publish(nc, scenario.messages)
    last = (await js.stream_info("PULSE_EVENTS")).state.last_seq
    await nc.drain()
    return int(last), scenario


async def prefill(url: str, count: int, seed: int) -> int:
    """``publish_scenario``'s last sequence."""
    last, _ = await publish_scenario(url, count, seed)
    return last


@contextlib.asynccontextmanager
async def caught_up(settings: Settings, last: int) -> AsyncIterator[Materializer]:
    """A materializer running on ``settings`` once it has applied sequence ``last``."""
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=60)
        assert running.lifecycle is not None
        yield running


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``pulse-bi`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pulse_bi", *args],
        env={**os.environ, "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
