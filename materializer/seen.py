"""Which event ids and keys the store has seen: an in-memory index over ``seen_events``
and ``seen_keys`` (docs/OPERATIONS.md), and the check that confirms a hit.

Seen event ids and keys are md5 hashes in tables without an index: a primary key's ART
index costs ~60 bytes per key in memory (it ran out of a 200 MB budget at 3.2M keys).
``SeenIndex`` keeps a sorted numpy copy of both (4 bytes per event id, 12 per key),
loaded at open and extended after each commit, and looks a batch up with a binary
search: a join against the tables scanned all of them per batch, ~47 ms at 5M events.

Only applied events are seen (docs/EVENTS.md, "Bad events"): a rejected message never
makes its id a duplicate of anything.
"""

from __future__ import annotations

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


U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
_U32_MAX = np.iinfo(np.uint32).max


class RecentIds:
    """The md5 of the last ``capacity`` applied event ids, all 16 bytes of it: a hit of
    the hash index on one of them is confirmed here, without SQL.

    Re-delivered events are nearly always recent (a publisher's retry, a redelivery,
    the simulator's re-sent messages); confirming one against the raw tables scans
    every raw table (~250 ms at 1M events), so a batch with a duplicate cost more the
    longer the file's history. Only older duplicates go to the raw tables now.

    The digests (``md5_halves``, computed for the hash index anyway) live in a ring of
    ``capacity`` rows, 800 KB at 50,000, oldest overwritten first: no Python object per
    id outlives its batch (docs/OPERATIONS.md, "Memory").
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._digests: U64 = np.zeros((capacity, 2), np.uint64)
        self._size = 0
        self._next = 0

    def __contains__(self, event_id: object) -> bool:
        if not isinstance(event_id, str):
            return False
        return bool(self.find(md5_halves([event_id]))[0])

    def __len__(self) -> int:
        return self._size

    def find(self, digests: U64) -> Any:
        """Which ``md5_halves`` rows are among the recent ids (bool mask)."""
        if self._size == 0 or len(digests) == 0:
            return np.zeros(len(digests), bool)
        held = self._digests[: self._size]
        found = np.isin(digests[:, 1], held[:, 1])
        for i in np.flatnonzero(found):  # rare: confirm the other 8 bytes
            found[i] = bool(((held[:, 1] == digests[i, 1]) & (held[:, 0] == digests[i, 0])).any())
        return found

    def add(self, digests: U64) -> None:
        """Add one committed batch's applied ids (``md5_halves`` rows), overwriting the
        oldest beyond ``capacity``."""
        digests = digests[-self.capacity :]
        count = len(digests)
        if count == 0:
            return
        first = min(count, self.capacity - self._next)
        self._digests[self._next : self._next + first] = digests[:first]
        self._digests[: count - first] = digests[first:]
        self._next = (self._next + count) % self.capacity
        self._size = min(self._size + count, self.capacity)


def _narrow(values: Any) -> Any:
    """``values`` as uint32 when they all fit (stream sequences below 2**32, the usual
    case: 4 bytes a key instead of 8), else as int64."""
    if len(values) == 0 or (values.min() >= 0 and values.max() <= _U32_MAX):
        return values.astype(np.uint32)
    return values.astype(np.int64)


class _SortedHashes:
    """Sorted 64-bit hashes, each with an optional second hash word (checked on a hit)
    and an optional integer value: a large ``base`` and a small ``delta`` merged into it
    when it grows past ``MERGE_AT``, so adding a batch costs O(delta), not O(history).

    Values are held as uint32 while they fit (``_narrow``) and widened to int64, base and
    delta alike, by the first that does not: lookups return them as int64 either way.
    """

    MERGE_AT = 1 << 16

    def __init__(self, primary: U64, check: U64 | None = None, values: I64 | None = None):
        self._has_check = check is not None
        self._has_values = values is not None
        order = np.argsort(primary, kind="stable")
        if values is not None:
            values = _narrow(values)
        self._base = self._columns(primary, check, values, order)
        self._delta = self._columns(
            np.empty(0, np.uint64),
            np.empty(0, np.uint64) if self._has_check else None,
            self._base[2][:0].copy() if self._has_values else None,
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

    @property
    def nbytes(self) -> int:
        """Bytes the index holds."""
        return sum(c.nbytes for level in (self._base, self._delta) for c in level if c is not None)

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
        if values is not None:
            values = _narrow(np.asarray(values))
            if values.dtype == np.int64 and self._base[2].dtype != np.int64:
                for level in (self._base, self._delta):  # the first value beyond 2**32 - 1
                    level[2] = level[2].astype(np.int64)
            values = values.astype(self._base[2].dtype, copy=False)
        new = self._columns(primary, check, values, order)
        self._merge(self._delta, new)
        if len(self._delta[0]) >= self.MERGE_AT:
            self._merge(self._base, self._delta)
            self._delta = [None if c is None else c[:0].copy() for c in self._delta]

    def columns(self) -> list[Any]:
        """Every entry as ``[primary, check, values]`` arrays (None where not held), not sorted."""
        pairs = zip(self._base, self._delta, strict=True)
        return [None if b is None else np.concatenate([b, d]) for b, d in pairs]

    @staticmethod
    def _merge(into: list[Any], new: list[Any]) -> None:
        # One column at a time, each old column freed as soon as its copy exists: the
        # peak is the index plus one column, not twice the index.
        positions = np.searchsorted(into[0], new[0])
        for i, added in enumerate(new):
            if added is not None:
                into[i] = np.insert(into[i], positions, added)


_BUCKET_BITS = 16


def _positions(starts: I64, stored: Any, buckets: Any, fingerprints: Any) -> Any:
    """Where each fingerprint is, or would go, in its bucket of ``stored`` (bucket ``b``
    holds ``stored[starts[b]:starts[b + 1]]``, sorted): a binary search of all queries at
    once, one numpy step per halving (~10 at 5M ids)."""
    low = starts[buckets]
    high = starts[buckets + 1]
    while True:
        active = low < high
        if not active.any():
            return low
        middle = (low + high) >> 1
        less = stored[np.where(active, middle, 0)] < fingerprints
        low = np.where(active & less, middle + 1, low)
        high = np.where(active & ~less, middle, high)


def _bucket_starts(buckets: Any) -> I64:
    """Where each bucket begins in an array sorted by bucket, and where the last ends."""
    starts = np.zeros((1 << _BUCKET_BITS) + 1, np.int64)
    np.cumsum(np.bincount(buckets, minlength=1 << _BUCKET_BITS), out=starts[1:])
    return starts


class EventFingerprints:
    """Seen event ids as 48-bit fingerprints in 4 bytes each (half the 8 of a sorted
    64-bit array): the top 16 bits of the 64-bit hash choose a bucket and are not stored
    (``_starts`` holds where each bucket begins), the next 32 are stored, sorted within
    their bucket, and the last 16 are dropped.

    A hit may be a false one (about n / 2**48 per lookup: 1 in 56 million at 5M ids);
    every hit is confirmed (``RecentIds``, then the raw tables), so it costs a confirm
    and never loses an event. New hashes wait in a small sorted ``delta`` of full
    hashes and are merged into the buckets once it reaches ``MERGE_AT``.
    """

    MERGE_AT = 1 << 16

    def __init__(self, hashes: U64) -> None:
        ordered = np.sort(hashes)
        buckets, self._fps = self._split(ordered)
        del ordered
        self._starts = _bucket_starts(buckets)
        self._delta: U64 = np.empty(0, np.uint64)

    @staticmethod
    def _split(hashes: U64) -> tuple[Any, Any]:
        buckets = (hashes >> np.uint64(48)).astype(np.intp)
        fingerprints = ((hashes >> np.uint64(16)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return buckets, fingerprints

    def __len__(self) -> int:
        return len(self._fps) + len(self._delta)

    @property
    def nbytes(self) -> int:
        """Bytes the index holds."""
        return int(self._fps.nbytes + self._starts.nbytes + self._delta.nbytes)

    def find(self, hashes: U64) -> Any:
        """Which hashes may have been seen (bool mask)."""
        found = np.zeros(len(hashes), bool)
        if len(hashes) == 0:
            return found
        if len(self._fps):
            buckets, fingerprints = self._split(hashes)
            at = _positions(self._starts, self._fps, buckets, fingerprints)
            inside = at < self._starts[buckets + 1]
            found = inside & (self._fps[np.minimum(at, len(self._fps) - 1)] == fingerprints)
        if len(self._delta):
            at = np.minimum(np.searchsorted(self._delta, hashes), len(self._delta) - 1)
            found |= self._delta[at] == hashes
        return found

    def add(self, hashes: U64) -> None:
        """Add hashes (after the transaction that stored them committed)."""
        if len(hashes) == 0:
            return
        new = np.sort(hashes)
        self._delta = np.insert(self._delta, np.searchsorted(self._delta, new), new)
        if len(self._delta) >= self.MERGE_AT:
            # Sorted full hashes are sorted by (bucket, fingerprint) too.
            buckets, fingerprints = self._split(self._delta)
            self._fps = np.insert(
                self._fps, _positions(self._starts, self._fps, buckets, fingerprints), fingerprints
            )
            self._starts += _bucket_starts(buckets)
            self._delta = np.empty(0, np.uint64)


class KeyFingerprints:
    """Seen keys as 80-bit fingerprints in 8 bytes each, with the sequence that created
    each (4 bytes while it fits): 12 bytes a key instead of the 20 of both 64-bit words
    of its md5.

    The top 16 bits of the key's low word choose a bucket and are not stored; the stored
    word is the low word's other 48 bits followed by the top 16 bits of the high word. A
    key that is absent but shares those 80 bits with one present reads as present: about
    n / 2**80 per lookup (1 in 5 * 10**17 with 2.5M keys). New keys wait, whole, in a
    small ``_SortedHashes`` and are merged into the buckets once it holds ``MERGE_AT``.
    """

    MERGE_AT = 1 << 16

    def __init__(self, lo: U64, hi: U64, values: I64) -> None:
        order = np.lexsort((hi, lo))
        buckets, self._fps = self._split(lo[order], hi[order])
        self._values = _narrow(values[order])
        self._starts = _bucket_starts(buckets)
        self._delta = self._empty_delta()

    def _empty_delta(self) -> _SortedHashes:
        empty = np.empty(0, np.uint64)
        return _SortedHashes(empty, empty, np.empty(0, np.int64))

    @staticmethod
    def _split(lo: U64, hi: U64) -> tuple[Any, U64]:
        buckets = (lo >> np.uint64(64 - _BUCKET_BITS)).astype(np.intp)
        fingerprints = (lo << np.uint64(_BUCKET_BITS)) | (hi >> np.uint64(64 - _BUCKET_BITS))
        return buckets, fingerprints

    def __len__(self) -> int:
        return len(self._fps) + len(self._delta)

    @property
    def nbytes(self) -> int:
        """Bytes the index holds."""
        held = (self._fps, self._values, self._starts)
        return int(sum(a.nbytes for a in held) + self._delta.nbytes)

    def find(self, lo: U64, hi: U64) -> tuple[Any, I64]:
        """Which keys are present (bool mask) and their value (0 when absent)."""
        found, values = self._delta.find(lo, hi)
        if len(self._fps) and len(lo):
            buckets, fingerprints = self._split(lo, hi)
            at = _positions(self._starts, self._fps, buckets, fingerprints)
            inside = at < self._starts[buckets + 1]
            at = np.minimum(at, len(self._fps) - 1)
            hit = inside & (self._fps[at] == fingerprints)
            found |= hit
            values[hit] = self._values[at[hit]]
        return found, values

    def add(self, lo: U64, hi: U64, values: I64) -> None:
        """Add keys (after the transaction that stored them committed)."""
        self._delta.add(lo, hi, values)
        if len(self._delta) < self.MERGE_AT:
            return
        lo, hi, values = self._delta.columns()
        order = np.lexsort((hi, lo))
        buckets, fingerprints = self._split(lo[order], hi[order])
        values = _narrow(values[order])
        if values.dtype == np.int64:  # the first sequence beyond 2**32 - 1
            self._values = self._values.astype(np.int64)
        at = _positions(self._starts, self._fps, buckets, fingerprints)
        self._fps = np.insert(self._fps, at, fingerprints)
        self._values = np.insert(self._values, at, values.astype(self._values.dtype))
        self._starts += _bucket_starts(buckets)
        self._delta = self._empty_delta()


class SeenIndex:
    """In-memory copy of ``seen_events`` and ``seen_keys`` for lookups without SQL.

    Event ids: 48 bits of the 64-bit ``md5_number_lower`` stored in ``seen_events``
    (``EventFingerprints``; a hit is confirmed). Keys: 80 bits of the 128-bit
    ``md5_number`` of ``seen_keys``, with the sequence that created the key
    (``KeyFingerprints``).
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.recent = RecentIds()
        events = cur.execute("SELECT h FROM seen_events").fetchnumpy()
        self.events = EventFingerprints(np.ascontiguousarray(events["h"], np.uint64))
        del events
        keys = cur.execute(
            "SELECT (k & 18446744073709551615::UHUGEINT)::UBIGINT AS lo,"
            " (k >> 64)::UBIGINT AS hi, sequence FROM seen_keys"
        ).fetchnumpy()
        self.keys = KeyFingerprints(
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
