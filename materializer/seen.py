"""Which event ids and keys the store has seen: an in-memory index over ``seen_events``
and ``seen_keys`` (docs/OPERATIONS.md), and the check that confirms a hit.

Seen event ids and keys are md5 hashes in tables without an index: a primary key's ART
index costs ~60 bytes per key in memory (it ran out of a 200 MB budget at 3.2M keys).
``SeenIndex`` keeps a sorted numpy copy of both (8 bytes per event id, 24 per key),
loaded at open and extended after each commit, and looks a batch up with a binary
search: a join against the tables scanned all of them per batch, ~47 ms at 5M events.

Only applied events are seen (docs/EVENTS.md, "Bad events"): a rejected message never
makes its id a duplicate of anything.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from materializer.aggregates.batch import md5_halves
from pulse_bi.contract.registry import RAW_TABLES


def confirm_seen(cur: duckdb.DuckDBPyConnection, candidates: list[str]) -> set[str]:
    """The candidate event ids that really were applied before.

    ``seen_events`` holds 64-bit hashes, so a hit may be a collision; the raw tables
    decide (every aggregate's ``raw_tables``; not ``rejected_events``: a rejected
    message is stored every time it comes, docs/EVENTS.md, "Bad events"). Only
    re-delivered events (rare) and collisions (rarer) get here.
    """
    if not candidates:
        return set()
    union = " UNION ALL ".join(f"SELECT event_id FROM {table}" for table in RAW_TABLES)
    rows = cur.execute(
        f"SELECT DISTINCT event_id FROM ({union}) WHERE event_id IN (SELECT unnest(?::VARCHAR[]))",
        [candidates],
    ).fetchall()
    return {event_id for (event_id,) in rows}


class RecentIds:
    """The ids of the last ``capacity`` applied events, as text: a hit of the hash index
    on one of them is confirmed here, without SQL.

    Re-delivered events are nearly always recent (a publisher's retry, a redelivery,
    the simulator's re-sent messages); confirming one against the raw tables scans
    every raw table (~250 ms at 1M events), so a batch with a duplicate cost more the
    longer the file's history. Only older duplicates go to the raw tables now.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._ids: set[str] = set()
        self._batches: deque[list[str]] = deque()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_ids: list[str]) -> None:
        """Add one committed batch's applied ids; forget the oldest batches beyond capacity."""
        if not event_ids:
            return
        self._batches.append(event_ids)
        self._ids.update(event_ids)
        while len(self._ids) > self.capacity and len(self._batches) > 1:
            self._ids.difference_update(self._batches.popleft())


U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


class _SortedHashes:
    """Sorted 64-bit hashes, each with an optional second hash word (checked on a hit)
    and an optional int64 value: a large ``base`` and a small ``delta`` merged into it
    when it grows past ``MERGE_AT``, so adding a batch costs O(delta), not O(history).
    """

    MERGE_AT = 1 << 16

    def __init__(self, primary: U64, check: U64 | None = None, values: I64 | None = None):
        self._has_check = check is not None
        self._has_values = values is not None
        order = np.argsort(primary, kind="stable")
        self._base = self._columns(primary, check, values, order)
        self._delta = self._columns(
            np.empty(0, np.uint64),
            np.empty(0, np.uint64) if self._has_check else None,
            np.empty(0, np.int64) if self._has_values else None,
            None,
        )

    @staticmethod
    def _columns(primary: U64, check: U64 | None, values: I64 | None, order: Any) -> list[Any]:
        columns: list[Any] = [primary, check, values]
        if order is not None:
            columns = [None if c is None else c[order] for c in columns]
        return columns

    def __len__(self) -> int:
        return len(self._base[0]) + len(self._delta[0])

    def find(self, primary: U64, check: U64 | None = None) -> tuple[Any, I64]:
        """Which queries are present (bool mask) and their value (0 when absent)."""
        found = np.zeros(len(primary), bool)
        values = np.zeros(len(primary), np.int64)
        for level in (self._base, self._delta):
            hit, at = self._find(level, primary, check)
            found |= hit
            if self._has_values and hit.any():
                values[hit] = level[2][at[hit]]
        return found, values

    def _find(self, level: list[Any], primary: U64, check: U64 | None) -> tuple[Any, Any]:
        keys: U64 = level[0]
        size = len(keys)
        if size == 0 or len(primary) == 0:
            return np.zeros(len(primary), bool), np.zeros(len(primary), np.intp)
        at = np.minimum(np.searchsorted(keys, primary), size - 1)
        hit = keys[at] == primary
        if check is None or not self._has_check:
            return hit, at
        seconds: U64 = level[1]
        confirmed = hit & (seconds[at] == check)
        # Rare: the same first word more than once (a 64-bit collision): look further.
        for i in np.flatnonzero(hit & ~confirmed):
            j = int(at[i]) + 1
            while j < size and keys[j] == primary[i]:
                if seconds[j] == check[i]:
                    confirmed[i] = True
                    at[i] = j
                    break
                j += 1
        return confirmed, at

    def add(self, primary: U64, check: U64 | None = None, values: I64 | None = None) -> None:
        """Add hashes (after the transaction that stored them committed)."""
        if len(primary) == 0:
            return
        order = np.argsort(primary, kind="stable")
        new = self._columns(primary, check, values, order)
        self._merge(self._delta, new)
        if len(self._delta[0]) >= self.MERGE_AT:
            self._merge(self._base, self._delta)
            self._delta = [None if c is None else c[:0].copy() for c in self._delta]

    @staticmethod
    def _merge(into: list[Any], new: list[Any]) -> None:
        # One column at a time, each old column freed as soon as its copy exists: the
        # peak is the index plus one column, not twice the index.
        positions = np.searchsorted(into[0], new[0])
        for i, added in enumerate(new):
            if added is not None:
                into[i] = np.insert(into[i], positions, added)


class SeenIndex:
    """In-memory copy of ``seen_events`` and ``seen_keys`` for lookups without SQL.

    Event ids: the 64-bit ``md5_number_lower`` stored in ``seen_events`` (a hit is
    confirmed against the raw tables). Keys: the full 128-bit ``md5_number`` of
    ``seen_keys`` as two words, with the sequence that created the key.
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.recent = RecentIds()
        events = cur.execute("SELECT h FROM seen_events").fetchnumpy()
        self.events = _SortedHashes(np.ascontiguousarray(events["h"], np.uint64))
        keys = cur.execute(
            "SELECT (k & 18446744073709551615::UHUGEINT)::UBIGINT AS lo,"
            " (k >> 64)::UBIGINT AS hi, sequence FROM seen_keys"
        ).fetchnumpy()
        self.keys = _SortedHashes(
            np.ascontiguousarray(keys["lo"], np.uint64),
            np.ascontiguousarray(keys["hi"], np.uint64),
            np.ascontiguousarray(keys["sequence"], np.int64),
        )

    def find_keys(self, keys: list[str]) -> dict[str, int]:
        """The keys that exist, with the sequence that created them."""
        if not keys:
            return {}
        halves = md5_halves(keys)
        found, sequences = self.keys.find(halves[:, 0], halves[:, 1])
        return {keys[i]: int(sequences[i]) for i in np.flatnonzero(found)}
