"""One event can never stop the stream: poison bytes, limits, dead letters (docs/EVENTS.md)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from materializer import queries
from materializer.aggregates import FOLDED, deltas, pipeline, stock
from materializer.events import Event, Rejection, decode
from materializer.queries import QueryContext
from materializer.store import RawMessage, Store
from tests.materializer.eventkit import Stream
from tests.materializer.poison import ORDER_SUBJECT, POISON

ALL_TIME = {"from": "1970-01-01T00:00:00Z", "to": "2200-01-01T00:00:00Z"}
MAX_MONEY = "9999999999999999.99"


@pytest.mark.parametrize(("name", "payload", "reason"), POISON, ids=[p[0] for p in POISON])
def test_poison_bytes_decode_to_a_rejection_with_a_clear_reason(
    name: str, payload: bytes, reason: str
) -> None:
    result = decode(ORDER_SUBJECT, payload)
    assert isinstance(result, Rejection), name
    assert result.reason.startswith(reason), (name, result.reason)


def test_a_payload_over_one_mebibyte_is_rejected_before_it_is_read() -> None:
    result = decode(ORDER_SUBJECT, b"[" * (1024 * 1024 + 1))
    assert result == Rejection("payload too large: 1048577 bytes, the limit is 1048576")


def test_an_order_of_sixty_lines_and_more_still_decodes() -> None:
    # More brackets than the nesting limit, but only 4 levels deep.
    stream = Stream()
    lines = [(f"SKU-{i}", 1, "1.00") for i in range(500)]
    message = stream.order("O-1", lines=lines)
    assert isinstance(decode(message.subject, message.data), Event)


def test_poison_bytes_among_valid_events_are_all_stored_and_the_rest_applied(
    store: Store,
) -> None:
    stream = Stream()
    messages = [stream.move("SKU-1", "W", 5)]
    for _, payload, _ in POISON:
        messages.append(stream.raw(payload))
        messages.append(stream.move("SKU-1", "W", 1))
    result = store.apply_batch(messages)
    assert (result.applied, result.rejected, result.duplicates) == (
        len(POISON) + 1,
        len(POISON),
        0,
    )
    assert store.query("stock_levels", {}).wire[0]["on_hand"] == 5 + len(POISON)
    raw = dict(store.conn.execute("SELECT sequence, raw FROM rejected_events").fetchall())
    assert {seq: bytes(data) for seq, data in raw.items()} == {
        m.sequence: m.data for m in messages if m.sequence % 2 == 0
    }
    # Every reject is listed; the raw text of the lossy ones is readable.
    rows = store.query("rejected_events", {"limit": 100}).wire
    assert len(rows) == len(POISON)


@pytest.mark.parametrize(
    ("time", "accepted"),
    [
        ("1970-01-01T00:00:00Z", True),
        ("2199-12-31T23:59:59.999999Z", True),
        ("2200-01-01T04:59:59+05:00", True),  # 23:59:59 UTC
        ("1969-12-31T23:59:59.999999Z", False),
        ("2200-01-01T00:00:00Z", False),
        ("9999-12-31T23:00:00-05:00", False),
        ("0001-01-01T00:00:00Z", False),
    ],
)
def test_event_time_must_be_inside_the_window(time: str, accepted: bool) -> None:
    message = Stream().order("O-1", time=time)
    result = decode(message.subject, message.data)
    if accepted:
        assert isinstance(result, Event)
    else:
        assert isinstance(result, Rejection)
        assert result.reason == (
            f"time: {result_time(time)} is outside "
            "1970-01-01T00:00:00+00:00 .. 2200-01-01T00:00:00+00:00 (exclusive)"
        )


def result_time(text: str) -> str:
    return datetime.fromisoformat(text).isoformat()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"due_date": "9999-12-31"}, "data.due_date: 9999-12-31 is outside 1970-01-01 .. "),
        ({"issued_on": "0001-01-01"}, "data.issued_on: 0001-01-01 is outside 1970-01-01 .. "),
        ({"amount": "10000000000000000.00"}, "data.amount: out of range"),
        ({"amount": "-10000000000000000"}, "data.amount: out of range"),
        ({"invoice_id": ""}, "data.invoice_id: expected str of length >= 1"),
        ({"customer_id": "c" * 257}, "data.customer_id: expected str of length <= 256"),
        ({"order_id": ""}, "data.order_id: expected str of length >= 1"),
    ],
)
def test_invoice_values_outside_the_limits_are_rejected(data: dict[str, Any], reason: str) -> None:
    message = Stream().invoice("I-1", "1.00")
    base = decode(message.subject, message.data)
    assert isinstance(base, Event)
    fields = {
        "invoice_id": "I-1",
        "customer_id": "C-1",
        "amount": "1.00",
        "issued_on": "2026-10-01",
        "due_date": "2026-11-01",
        **data,
    }
    bad = Stream().event("invoice.issued", fields)
    result = decode(bad.subject, bad.data)
    assert isinstance(result, Rejection)
    assert result.reason.startswith(reason), result.reason


@pytest.mark.parametrize(
    ("delta", "reason"),
    [
        (1_000_000_001, "data.quantity_delta: expected int <= 1000000000"),
        (-1_000_000_001, "data.quantity_delta: expected int >= -1000000000"),
        (2**64, "data.quantity_delta: expected int <= 1000000000"),
    ],
)
def test_quantity_deltas_outside_the_limits_are_rejected(delta: int, reason: str) -> None:
    message = Stream().move("SKU-1", "W", delta)
    result = decode(message.subject, message.data)
    assert isinstance(result, Rejection) and result.reason == reason


def test_text_and_line_limits() -> None:
    stream = Stream()
    long_name = stream.product("SKU-1", name="n" * 4097)
    result = decode(long_name.subject, long_name.data)
    assert isinstance(result, Rejection)
    assert result.reason == "data.name: expected str of length <= 4096"
    lines = [("SKU-1", 1, "1.00")] * 10_001
    too_many = stream.order("O-1", lines=lines)
    result = decode(too_many.subject, too_many.data)
    assert isinstance(result, Rejection)
    assert result.reason == "data.lines: expected array of length <= 10000"


# Dead letters: a batch that fails on an event is split ---------------------------------


def narrow_the_hourly_revenue(conn: duckdb.DuckDBPyConnection) -> None:
    """Give the hourly revenue that batches write (``aggregate_deltas``, m0012) a
    DECIMAL(17,2), so that an order of the largest amount fails in SQL. DuckDB changes no
    type of a table with CHECK constraints: the table is made again without them."""
    conn.execute(
        "CREATE TABLE narrowed AS SELECT * REPLACE (gross_revenue::DECIMAL(17, 2)"
        " AS gross_revenue) FROM aggregate_deltas"
    )
    conn.execute("DROP TABLE aggregate_deltas")
    conn.execute("ALTER TABLE narrowed RENAME TO aggregate_deltas")


def _everything(store: Store) -> dict[str, Any]:
    state = store.query("pipeline", {}).wire
    return {
        "sales_by_hour": store.query("sales_by_hour", ALL_TIME).wire,
        "top_products": store.query("top_products", ALL_TIME).wire,
        "stock_levels": store.query("stock_levels", {}).wire,
        "counts": (state["last_sequence"], state["events_applied"], state["events_rejected"]),
    }


def _batch_with_an_overflowing_order(stream: Stream, bad: bytes | None = None) -> list[Any]:
    big = [("SKU-1", 1, MAX_MONEY)]
    messages = [
        stream.order("O-1", total="12.00", lines=[("SKU-1", 1, "12.00")]),
        stream.move("SKU-1", "W", 5),
        stream.order("O-2", total="5.00", channel="store"),
    ]
    if bad is None:
        messages.append(stream.order("O-3", total=MAX_MONEY, lines=big, id="overflow"))
    else:
        messages.append(stream.raw(bad))
    messages += [
        stream.move("SKU-1", "W", -2),
        stream.order("O-4", total="1.00", time="2026-11-25T11:00:00Z"),
        stream.cancel("O-2"),
    ]
    return messages


def test_a_batch_failing_in_sql_is_split_and_only_the_offending_event_rejected(
    tmp_path: Path,
) -> None:
    split = Store.open(tmp_path / "split.duckdb")
    decoded = Store.open(tmp_path / "decoded.duckdb")
    try:
        narrow_the_hourly_revenue(split.conn)
        narrow_the_hourly_revenue(decoded.conn)
        result = split.apply_batch(_batch_with_an_overflowing_order(Stream()))
        assert (result.first_sequence, result.last_sequence) == (1, 7)
        assert (result.applied, result.rejected, result.duplicates) == (6, 1, 0)
        assert "sales" in result.aggregates and "stock" in result.aggregates
        assert result.changes.channels == ["store", "web"]
        [row] = split.query("rejected_events", {}).wire
        assert row["sequence"] == 4
        assert (row["event_id"], row["event_type"]) == ("overflow", "order.created")
        assert row["reason"].startswith("internal: ConversionException: ")
        assert "DECIMAL(17,2)" in row["reason"]
        # The same as if that message had been rejected at decode.
        decoded.apply_batch(_batch_with_an_overflowing_order(Stream(), bad=b"junk"))
        assert _everything(split) == _everything(decoded)
        # The batch again (a re-delivery): every sequence is already applied.
        again = split.apply_batch(_batch_with_an_overflowing_order(Stream()))
        assert (again.applied, again.rejected) == (0, 0)
        assert split.last_sequence() == 7
    finally:
        split.close()
        decoded.close()


def test_the_split_survives_a_restart_and_ingest_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "pulse.duckdb"
    store = Store.open(path)
    stream = Stream()
    try:
        narrow_the_hourly_revenue(store.conn)
        store.apply_batch(_batch_with_an_overflowing_order(stream))
    finally:
        store.close()
    store = Store.open(path)
    try:
        later = stream.order("O-9", time="2026-11-25T12:00:00Z")
        result = store.apply_batch([stream.move("SKU-1", "W", 10), later])
        assert (result.applied, result.rejected) == (2, 0)
        assert store.query("stock_levels", {}).wire[0]["on_hand"] == 13
        assert store.stats()["events_rejected"] == 1
    finally:
        store.close()


@dataclass
class PoisonSku:
    """What the test-only ``fail_on_poison_sku`` hook raises, and the batch sizes it saw."""

    error: Exception = field(default_factory=lambda: ValueError("cannot apply this move"))
    calls: list[int] = field(default_factory=list)


@pytest.fixture
def fail_on_poison_sku(monkeypatch: pytest.MonkeyPatch) -> PoisonSku:
    """Test-only: the stock aggregate raises ``error`` on a move of sku ``POISON``, as a
    bug triggered by one input would."""
    hook = PoisonSku()
    real_apply = stock.apply

    def apply(batch: Any) -> None:
        moves = batch.of_type("stock.moved")
        hook.calls.append(len(moves))
        if any(move.data.sku == "POISON" for move in moves):
            raise hook.error
        real_apply(batch)

    monkeypatch.setattr(stock, "apply", apply)
    return hook


def test_a_python_error_on_one_event_is_split_out_too(
    store: Store, fail_on_poison_sku: PoisonSku
) -> None:
    stream = Stream()
    messages = [
        stream.move("POISON", "W", 1, id=f"p{i}") if i in (7, 15) else stream.move("SKU-1", "W", 1)
        for i in range(20)
    ]
    result = store.apply_batch(messages)
    assert (result.applied, result.rejected, result.last_sequence) == (18, 2, 20)
    rows = store.query("rejected_events", {}).wire
    assert [(r["sequence"], r["event_id"]) for r in rows] == [(16, "p15"), (8, "p7")]
    assert {r["reason"] for r in rows} == {"internal: ValueError: cannot apply this move"}
    assert store.query("stock_levels", {}).wire[0]["on_hand"] == 18
    assert store.stats()["events_rejected"] == 2
    # Two bad events in 20: a handful of attempts, not one per event.
    assert len(fail_on_poison_sku.calls) < 20


def test_an_infrastructure_fault_is_raised_unchanged_and_nothing_is_split(
    store: Store, fail_on_poison_sku: PoisonSku
) -> None:
    stream = Stream()
    store.apply_batch([stream.move("SKU-1", "W", 1)])
    fault = duckdb.IOException("IO Error: could not write file: No space left on device")
    fail_on_poison_sku.error = fault
    calls_before = len(fail_on_poison_sku.calls)
    messages = [stream.move("SKU-1", "W", 1), stream.move("POISON", "W", 1)]
    with pytest.raises(duckdb.IOException) as raised:
        store.apply_batch(messages)
    assert raised.value is fault
    assert len(fail_on_poison_sku.calls) == calls_before + 1  # tried once, not split
    assert store.last_sequence() == 1
    assert store.query("rejected_events", {}).wire == []
    assert store.query("stock_levels", {}).wire[0]["on_hand"] == 1
    # Once the fault clears (here: the move is merely bad), the batch applies once.
    fail_on_poison_sku.error = ValueError("bad move")
    result = store.apply_batch(messages)
    assert (result.applied, result.rejected) == (1, 1)
    assert store.query("stock_levels", {}).wire[0]["on_hand"] == 2


def test_a_dead_letter_keeps_the_raw_bytes_id_and_type(
    store: Store, fail_on_poison_sku: PoisonSku
) -> None:
    poison = Stream().move("POISON", "W", 1, id="p1")
    result = store.apply_batch([poison])
    assert (result.applied, result.rejected) == (0, 1)
    row = store.conn.execute(
        "SELECT sequence, subject, event_id, event_type, raw FROM rejected_events"
    ).fetchone()
    assert row is not None
    assert row[:4] == (1, "pulse.events.stock.moved", "p1", "stock.moved")
    assert bytes(row[4]) == poison.data


def test_a_dead_letter_counts_its_pipeline_row_towards_the_next_fold(
    store: Store, fail_on_poison_sku: PoisonSku, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead letter appends the pipeline state's row to the deltas (m0016) like any batch,
    and the store counts it: folds come when the rows are due, however many dead letters
    there were."""
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 1)
    result = store.apply_batch([Stream().move("POISON", "W", 1)])
    assert (result.applied, result.rejected) == (0, 1)
    assert store.read(lambda cur: deltas.pending_rows(cur, FOLDED)) == 1
    assert store.fold_due
    store.compact()
    assert not store.fold_due
    assert store.read(pipeline.state)["events_rejected"] == 1


def test_a_failure_after_the_commit_does_not_apply_the_batch_twice(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = Stream()
    messages = [stream.move("SKU-1", "W", 1) for _ in range(4)]
    real_add = store._seen.events.add
    failures = [ValueError("after the commit")]

    def add(*args: Any) -> None:
        if failures:
            raise failures.pop()
        real_add(*args)

    monkeypatch.setattr(store._seen.events, "add", add)
    result = store.apply_batch(messages)
    assert store.last_sequence() == 4
    assert store.query("stock_levels", {}).wire[0]["on_hand"] == 4
    assert store.query("rejected_events", {}).wire == []
    assert result.rejected == 0


# The pipeline state kept in memory ----------------------------------------------------

#: Each kind of batch that moves the pipeline state a different way, as a function of
#: the stream that hands out its messages.
_BATCH_KINDS: dict[str, Callable[[Stream], list[RawMessage]]] = {
    "applied": lambda s: [s.order(f"O-{s.next_sequence}", time="2026-11-25T09:00:00Z")],
    "a decoder's reject": lambda s: [s.raw(b"junk"), s.move("SKU-1", "W", 1)],
    # The second is an aggregate's reject: the order id was created already.
    "an aggregate's reject": lambda s: [
        s.order("O-again", time="2026-11-25T10:00:00Z"),
        s.order("O-again", time="2026-11-25T11:00:00Z"),
    ],
    "duplicates": lambda s: [
        s.move("SKU-2", "W", 1, id="twice"),
        s.move("SKU-2", "W", 1, id="twice"),
    ],
    # Split until the poison move is a dead letter; the moves around it apply.
    "a dead letter": lambda s: [
        s.move("SKU-1", "W", 1),
        s.move("POISON", "W", 1),
        s.move("SKU-3", "W", 2, time="2026-11-26T08:00:00Z"),
    ],
    # The test skips sequences before a kind named "a gap ...".
    "a gap before it": lambda s: [s.move("SKU-1", "W", 1)],
    "a gap before a dead letter": lambda s: [s.move("POISON", "W", 1)],
    "a named site": lambda s: [
        msgspec.structs.replace(s.order(f"O-{s.next_sequence}"), site="north"),
        s.order(f"O-{s.next_sequence}", time="2026-11-24T00:00:00Z"),
    ],
    "older events than the latest": lambda s: [
        s.move("SKU-1", "W", 1, time="2020-01-01T00:00:00Z")
    ],
    "only duplicates": lambda s: [s.move("SKU-2", "W", 1, id="twice")],
}


def _same_state_and_answer(store: Store) -> None:
    """The state in memory is the file's, and so is the ``pipeline`` query's answer."""
    assert store.pipeline_state() == store.read(pipeline.read_state)
    from_memory = store.query("pipeline", {}, context=QueryContext()).wire
    from_file = store.read(lambda cur: queries.run(cur, "pipeline", {}, QueryContext())).wire
    assert from_memory == from_file


def test_the_pipeline_state_in_memory_is_the_files_after_every_kind_of_batch(
    tmp_path: Path, fail_on_poison_sku: PoisonSku, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store keeps the pipeline state it committed, and the ``pipeline`` query shows
    it without reading the file: after each kind of batch, folds among them, it is what
    the file's view and gap totals say, and a store opened again reads the same."""
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 4)  # folds come among the batches
    path = tmp_path / "state.duckdb"
    store = Store.open(path)
    stream = Stream()
    try:
        for kind, messages in _BATCH_KINDS.items():
            if kind.startswith("a gap"):
                stream.next_sequence += 3
            store.apply_batch(messages(stream))
            store.fold_when_due()
            _same_state_and_answer(store)
        state = store.pipeline_state()
    finally:
        store.close()
    assert (state.gap_count, state.events_missing) == (2, 6)
    assert state.events_rejected == 4  # the junk, the order again, two dead letters
    assert state.events_duplicate == 2
    assert state.last_event_time == datetime(2026, 11, 26, 8, tzinfo=UTC)
    again = Store.open(path)
    try:
        assert again.pipeline_state() == state
        _same_state_and_answer(again)
    finally:
        again.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(sorted(_BATCH_KINDS)), min_size=1, max_size=7),
    fold_rows=st.integers(min_value=1, max_value=12),
)
def test_the_pipeline_state_in_memory_follows_any_run_of_batches(
    kinds: list[str], fold_rows: int
) -> None:
    """Any order of the batch kinds, folds at any size: memory and file agree."""
    poison = PoisonSku()
    real_apply = stock.apply

    def apply(batch: Any) -> None:
        if any(move.data.sku == "POISON" for move in batch.of_type("stock.moved")):
            raise poison.error
        real_apply(batch)

    with (
        tempfile.TemporaryDirectory() as directory,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(stock, "apply", apply)
        patch.setattr(deltas, "COMPACT_ROWS", fold_rows)
        store = Store.open(Path(directory) / "state.duckdb")
        stream = Stream()
        try:
            for kind in kinds:
                if kind.startswith("a gap"):
                    stream.next_sequence += 2
                store.apply_batch(_BATCH_KINDS[kind](stream))
                store.fold_when_due()
                assert store.pipeline_state() == store.read(pipeline.read_state)
        finally:
            store.close()
