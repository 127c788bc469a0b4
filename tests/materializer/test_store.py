"""The store as the consumer uses it: exactly once, duplicates, restarts, concurrent reads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from materializer.store import Store
from tests.materializer.eventkit import DAY, Stream


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the DuckDB file lives."""
    return tmp_path / "pulse.duckdb"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    """A fresh store."""
    opened = Store.open(path)
    try:
        yield opened
    finally:
        opened.close()


def orders(store: Store) -> int:
    return int(store.query("sales_summary", DAY).wire["orders"])


def test_empty_store_starts_at_sequence_zero(store: Store) -> None:
    assert store.last_sequence() == 0
    stats = store.stats()
    assert stats["last_sequence"] == 0
    assert (stats["events_applied"], stats["events_rejected"], stats["batches"]) == (0, 0, 0)
    assert stats["last_event_time"] is None


def test_batch_result_counts_and_sequences(store: Store) -> None:
    stream = Stream(start=41)
    result = store.apply_batch(
        [
            stream.order("O-1", time="2026-11-25T09:00:00Z"),
            stream.raw(b"junk"),
            stream.move("A", "W", 1, time="2026-11-25T11:00:00Z"),
        ]
    )
    assert (result.first_sequence, result.last_sequence) == (41, 43)
    assert (result.applied, result.rejected, result.duplicates) == (2, 1, 0)
    assert result.last_event_time == datetime(2026, 11, 25, 11, tzinfo=UTC)
    assert store.last_sequence() == 43
    stats = store.stats()
    assert (stats["events_applied"], stats["events_rejected"], stats["batches"]) == (2, 1, 1)
    assert stats["last_event_time"] == datetime(2026, 11, 25, 11, tzinfo=UTC)
    assert stats["last_batch_at"] is not None


def test_offsets_count_by_instant_in_the_latest_time_and_the_hour(store: Store) -> None:
    """The write path keeps each event's time as its UTC instant (``Accepted.micros``):
    the latest event is the latest instant, not the latest clock reading, and an order
    counts in its UTC hour, a day earlier than its local date here."""
    stream = Stream()
    result = store.apply_batch(
        [
            stream.order("O-1", time="2026-11-25T00:30:00+01:00"),  # 2026-11-24T23:30Z
            stream.move("A", "W", 1, time="2026-11-25T12:30:00+02:00"),  # 10:30Z
            stream.move("A", "W", 2, time="2026-11-25T11:00:00.000001Z"),
            stream.move("A", "W", 3, time="2026-11-25T05:59:59-05:00"),  # 10:59:59Z
        ]
    )
    latest = datetime(2026, 11, 25, 11, 0, 0, 1, tzinfo=UTC)
    assert result.last_event_time == latest
    assert store.stats()["last_event_time"] == latest
    [row] = store.query(
        "sales_by_hour", {"from": "2026-11-24T00:00:00Z", "to": "2026-11-26T00:00:00Z"}
    ).wire
    assert row["hour"] == "2026-11-24T23:00:00+00:00"
    assert result.changes.sales_hours == ["2026-11-24T23:00:00+00:00"]
    [level] = store.query("stock_levels", {}).wire
    assert level["last_movement_at"] == "2026-11-25T11:00:00.000001+00:00"


def _central(store: Store) -> tuple[int, datetime | None]:
    """The central site's events and latest event time (the ``sites`` query's row)."""
    [row] = [row for row in store.query("sites", {}).wire if row["site"] == ""]
    latest = row["last_event_time"]
    return row["events"], None if latest is None else datetime.fromisoformat(latest)


def test_the_latest_time_is_of_the_events_the_batch_applies(store: Store) -> None:
    """The latest event time, found while decoding, leaves out an event applied before
    (sent again) and, for the site's, one an aggregate refused: either may be the latest."""
    stream = Stream()
    store.apply_batch(
        [
            stream.order("O-1", id="o1", time="2026-11-25T08:00:00Z"),
            stream.move("A", "W", 1, id="m1", time="2026-11-25T12:00:00Z"),
        ]
    )
    assert _central(store) == (2, datetime(2026, 11, 25, 12, tzinfo=UTC))
    again = store.apply_batch(
        [
            stream.move("A", "W", 1, id="m1", time="2026-11-25T12:00:00Z"),  # sent again
            stream.move("A", "W", 2, id="m2", time="2026-11-25T09:00:00Z"),
        ]
    )
    assert (again.applied, again.duplicates) == (1, 1)
    assert again.last_event_time == datetime(2026, 11, 25, 9, tzinfo=UTC)
    only_again = store.apply_batch([stream.move("A", "W", 2, id="m2", time="2026-11-25T09:00Z")])
    assert (only_again.applied, only_again.last_event_time) == (0, None)
    refused = store.apply_batch(
        [
            # O-1 created again under another event id: refused by the sales aggregate.
            stream.order("O-1", id="o1-again", time="2026-11-26T23:00:00Z"),
            stream.move("A", "W", 3, id="m3", time="2026-11-26T10:00:00Z"),
        ]
    )
    assert (refused.applied, refused.rejected) == (1, 1)
    # The central site's latest time is the applied movement's, not the refused order's.
    assert _central(store) == (4, datetime(2026, 11, 26, 10, tzinfo=UTC))


def test_the_latest_time_at_the_edges_of_the_time_window(store: Store) -> None:
    """The epoch itself (0 microseconds) is a time like any other, and a time outside
    the window (year 9999) is a reject that leaves the latest time alone."""
    stream = Stream()
    first = store.apply_batch([stream.move("A", "W", 1, time="1970-01-01T00:00:00Z")])
    assert first.last_event_time == datetime(1970, 1, 1, tzinfo=UTC)
    assert _central(store) == (1, datetime(1970, 1, 1, tzinfo=UTC))
    last = store.apply_batch(
        [
            stream.move("A", "W", 1, time="9999-12-31T23:59:59Z"),
            stream.move("A", "W", 1, time="2199-12-31T23:59:59.999999Z"),
        ]
    )
    assert (last.applied, last.rejected) == (1, 1)
    latest = datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert last.last_event_time == latest
    assert _central(store) == (2, latest)


def test_reapplying_a_batch_of_old_sequences_is_a_no_op(store: Store) -> None:
    stream = Stream()
    batch = [stream.order("O-1"), stream.order("O-2")]
    store.apply_batch(batch)
    before = store.stats()
    again = store.apply_batch(batch)
    assert (again.applied, again.rejected, again.duplicates) == (0, 0, 0)
    assert store.stats() == before
    assert orders(store) == 2


def test_partly_old_batch_applies_only_the_new_messages(store: Store) -> None:
    stream = Stream()
    first = [stream.order("O-1"), stream.order("O-2")]
    store.apply_batch(first)
    overlap = [first[1], stream.order("O-3")]
    result = store.apply_batch(overlap)
    assert (result.first_sequence, result.applied) == (3, 1)
    assert orders(store) == 3


def test_reopening_the_file_resumes_last_sequence_and_data(path: Path) -> None:
    stream = Stream()
    store = Store.open(path)
    store.apply_batch([stream.order("O-1"), stream.cancel("O-2")])
    store.close()
    reopened = Store.open(path)
    try:
        assert reopened.last_sequence() == 2
        assert reopened.stats()["events_applied"] == 2
        # The waiting cancellation survived the restart.
        reopened.apply_batch([stream.order("O-2")])
        summary = reopened.query("sales_summary", DAY).wire
        assert (summary["orders"], summary["cancelled_orders"]) == (2, 1)
    finally:
        reopened.close()


def test_same_event_id_twice_in_one_batch_is_applied_once(store: Store) -> None:
    stream = Stream()
    result = store.apply_batch([stream.order("O-1", id="e1"), stream.order("O-1", id="e1")])
    assert (result.applied, result.rejected, result.duplicates) == (1, 0, 1)
    assert orders(store) == 1


def test_same_event_id_in_a_later_batch_is_a_no_op(store: Store) -> None:
    stream = Stream()
    store.apply_batch([stream.order("O-1", id="e1"), stream.move("A", "W", 5, id="m1")])
    result = store.apply_batch(
        [
            stream.move("A", "W", 5, id="m1"),
            stream.order("O-1", id="e1"),
            stream.move("A", "W", 1, id="m2"),
        ]
    )
    assert (result.applied, result.rejected, result.duplicates) == (1, 0, 3 - 1)
    assert store.query("stock_levels", {}).wire[0]["on_hand"] == 6
    assert orders(store) == 1
    assert store.stats()["events_duplicate"] == 2
    # The sequence still advances past the duplicates.
    assert store.last_sequence() == 5


def test_batch_of_only_duplicates_still_advances_the_sequence(store: Store) -> None:
    stream = Stream()
    store.apply_batch([stream.order("O-1", id="e1")])
    result = store.apply_batch([stream.order("O-1", id="e1")])
    assert result.aggregates == {"pipeline"}
    assert store.last_sequence() == 2


def test_failed_batch_leaves_nothing_behind(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from materializer.aggregates import pipeline

    stream = Stream()
    store.apply_batch([stream.order("O-1")])
    before = store.stats()
    real_record = pipeline.record

    # The disk fails when the rejects and the state are written, after the orders of the
    # batch: the whole batch must roll back (an infrastructure fault is not split).
    def record(batch: object, **kwargs: object) -> None:
        real_record(batch, **kwargs)  # type: ignore[arg-type]
        raise duckdb.IOException("IO Error: could not write file: No space left on device")

    monkeypatch.setattr(pipeline, "record", record)
    with pytest.raises(duckdb.IOException):
        store.apply_batch([stream.order("O-2"), stream.raw(b"junk")])
    assert store.stats() == before
    assert store.last_sequence() == 1
    assert orders(store) == 1
    assert store.query("rejected_events", {}).wire == []


def test_queries_run_concurrently_with_apply_batch(store: Store) -> None:
    stream = Stream()
    batches = [[stream.order(f"O-{b}-{i}") for i in range(200)] for b in range(10)]
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seen.append(orders(store))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for batch in batches:
            store.apply_batch(batch)
    finally:
        done.set()
        reader.join()
    assert errors == []
    # Readers only ever see whole batches.
    assert all(count % 200 == 0 for count in seen)
    assert seen == sorted(seen)
    assert orders(store) == 2000


def test_event_id_hash_collision_is_not_taken_for_a_duplicate(path: Path) -> None:
    stream = Stream()
    store = Store.open(path)
    store.apply_batch([stream.order("O-1", id="e1")])
    # Pretend another id hashes like a stored one: its 64-bit hash is already there
    # (written behind the store's back, so it only shows after a restart).
    store.conn.execute("INSERT INTO seen_events_base SELECT md5_number_lower('e2')")
    store.close()
    store = Store.open(path)
    try:
        result = store.apply_batch([stream.order("O-2", id="e2")])
        assert (result.applied, result.duplicates) == (1, 0)
        assert orders(store) == 2
    finally:
        store.close()


def test_seen_ids_and_keys_survive_a_restart(path: Path) -> None:
    stream = Stream()
    store = Store.open(path)
    store.apply_batch([stream.order("O-1", id="e1"), stream.invoice("I-1", "10.00", id="e2")])
    store.close()
    store = Store.open(path)
    try:
        result = store.apply_batch(
            [
                # Published again (new stream sequences, same ids): no-ops.
                stream.order("O-1", id="e1"),
                stream.invoice("I-1", "10.00", id="e2"),
                stream.order("O-1", id="e3"),  # created again: rejected
                stream.cancel("O-1"),  # counts in O-1's hour
                stream.payment("P-1", "I-1", "4.00"),
            ]
        )
        assert (result.applied, result.rejected, result.duplicates) == (2, 1, 2)
        summary = store.query("sales_summary", DAY).wire
        assert (summary["orders"], summary["cancelled_orders"]) == (1, 1)
        aging = store.query("ar_aging", {"as_of": "2026-11-25"}).wire
        assert aging["total"] == "6.00"
    finally:
        store.close()


def test_a_failed_batch_leaves_nothing_seen(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from materializer.aggregates import pipeline

    stream = Stream()
    message = stream.order("O-1", id="e1")

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "record", fail)
    with pytest.raises(RuntimeError):
        store.apply_batch([message])
    monkeypatch.undo()
    result = store.apply_batch([message])
    assert (result.applied, result.duplicates) == (1, 0)
    assert orders(store) == 1


def test_sorted_hashes_find_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from materializer.seen import _SortedHashes

    monkeypatch.setattr(_SortedHashes, "MERGE_AT", 64)
    rng = np.random.default_rng(7)
    first = rng.integers(0, 2**64, 500, dtype=np.uint64)
    index = _SortedHashes(first[:100], first[:100] ^ np.uint64(1), np.arange(100, dtype=np.int64))
    for start in range(100, 500, 30):  # some batches merge, some stay in the delta
        stop = min(start + 30, 500)
        index.add(first[start:stop], first[start:stop] ^ np.uint64(1), np.arange(start, stop))
    assert len(index) == 500
    found, values = index.find(first, first ^ np.uint64(1))
    assert found.all()
    assert (values == np.arange(500)).all()
    # Same first word, another second word: not found.
    found, _ = index.find(first, first ^ np.uint64(2))
    assert not found.any()
    # A 64-bit collision of first words still finds both keys.
    index.add(first[:1], first[:1] ^ np.uint64(3), np.array([999]))
    found, values = index.find(first[:1].repeat(2), first[:1] ^ np.array([1, 3], np.uint64))
    assert found.all()
    assert values.tolist() == [0, 999]
    absent = rng.integers(0, 2**64, 50, dtype=np.uint64)
    assert not index.find(absent, absent)[0].any()


def test_sorted_hashes_widen_values_beyond_32_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sequences are held in 4 bytes while they fit; the first that does not widens the
    index, and every value still comes back exact."""
    import numpy as np

    from materializer.seen import _SortedHashes

    monkeypatch.setattr(_SortedHashes, "MERGE_AT", 64)
    rng = np.random.default_rng(11)
    first = rng.integers(0, 2**64, 300, dtype=np.uint64)
    values = np.arange(1, 301, dtype=np.int64) + (2**32 - 150)  # crosses 2**32 - 1
    index = _SortedHashes(first[:100], first[:100], values[:100])
    narrow = index.nbytes
    assert narrow == 100 * (8 + 8 + 4)
    for start in range(100, 300, 40):  # in the delta, merged, widened on the way
        index.add(first[start : start + 40], first[start : start + 40], values[start : start + 40])
    found, got = index.find(first, first)
    assert found.all()
    assert (got == values).all()
    assert index.nbytes == 300 * (8 + 8 + 8)


def test_md5_halves_match_duckdb(store: Store) -> None:
    from materializer.aggregates.batch import md5_halves

    values = ["o:O-1", "e1", "ünïcode-€", ""]
    halves = md5_halves(values)
    rows = store.conn.execute(
        "SELECT md5_number(v), md5_number_lower(v) FROM unnest(?::VARCHAR[]) t(v)", [values]
    ).fetchall()
    for (full, lower), (low_word, high_word) in zip(rows, halves.tolist(), strict=True):
        assert full == (high_word << 64) | low_word
        assert lower == high_word
