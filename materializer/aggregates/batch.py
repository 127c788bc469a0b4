"""What one batch carries through the aggregates while its transaction is open."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

TIME = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 2)


class Accepted(msgspec.Struct, gc=False):
    """A valid, not-yet-seen event of the batch with the message it came from."""

    sequence: int
    event_id: str
    time: datetime
    data: Any
    message: Any  # the RawMessage, for rejections found while applying


class Batch:
    """Per-batch state shared by the aggregates: events by type, keys, rejects, changes.

    ``found`` maps seen-key strings (``'o:' + order_id`` …) that already exist in
    ``seen_keys`` to the stream sequence that created them; aggregates ask for keys in
    ``probe`` and the store resolves them all with one join before ``apply``.
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.cur = cur
        self.events: dict[str, list[Accepted]] = {}
        self.rejects: list[tuple[int, str, str | None, str | None, str, bytes, datetime]] = []
        self.found: dict[str, int] = {}
        self.new_keys: list[str] = []
        #: Ids of the batch's events that are new (valid or rejected): seen from now on.
        self.event_ids: list[str] = []
        self.new_key_sequences: list[int] = []
        self.aggregates: set[str] = {"pipeline"}
        self.sales_hours: set[str] = set()
        self.channels: set[str] = set()
        self.skus: set[str] = set()
        self.warehouses: set[str] = set()
        self.customers: set[str] = set()
        self.receivables = False
        self.products = False

    def of_type(self, event_type: str) -> list[Accepted]:
        """Accepted events of one type in stream order."""
        return self.events.get(event_type, [])

    def reject(self, event: Accepted, event_type: str, reason: str) -> None:
        """Store an event as rejected for a reason found while applying it."""
        self.rejects.append(
            (
                event.sequence,
                event.message.subject,
                event.event_id,
                event_type,
                reason,
                event.message.data,
                event.message.received_at,
            )
        )

    def add_key(self, key: str, sequence: int) -> None:
        """Record a key (event, order, invoice…) created by this batch."""
        self.new_keys.append(key)
        self.new_key_sequences.append(sequence)

    def insert(self, table: str, columns: dict[str, pa.Array], select: str = "*") -> None:
        """Insert columns into ``table`` by column name, in one statement."""
        # DuckDB reads the local Arrow table by its name (a replacement scan): cheaper
        # than registering a view, which writes to the catalog.
        frame = pa.table(columns)  # noqa: F841 - read by DuckDB below
        self.cur.execute(f"INSERT INTO {table} BY NAME SELECT {select} FROM frame")


def iso(value: datetime) -> str:
    """ISO-8601 UTC with offset, e.g. ``2026-11-25T10:00:00+00:00``."""
    return value.isoformat()


def strings(values: Iterable[Any]) -> pa.Array:
    """A utf8 Arrow array."""
    return pa.array(list(values), pa.string())


def ints(values: Iterable[int]) -> pa.Array:
    """An int64 Arrow array."""
    return pa.array(list(values), pa.int64())
