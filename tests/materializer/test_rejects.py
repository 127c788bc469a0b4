"""Bad input never stops the pipeline and is never dropped: stored, counted, explained."""

from __future__ import annotations

from materializer.store import RawMessage, Store
from tests.materializer.eventkit import Stream


def bad_inputs(stream: Stream) -> list[tuple[RawMessage, str | None, str | None, str]]:
    """Every bad-input case of docs/EVENTS.md: message, event id, event type, reason."""
    line = [("SKU-1", 1, "1.00")]
    return [
        (stream.raw(b'{"specversion": "1.0", "id": '), None, None, "invalid JSON: "),
        (
            stream.raw(b'{"specversion": "1.0", "type": "order.created"}'),
            None,
            "order.created",
            "not a CloudEvent: missing 'id'",
        ),
        (
            stream.event("foo.bar", {}, id="u1"),
            "u1",
            "foo.bar",
            "unknown event type 'foo.bar'",
        ),
        (
            stream.event("order.cancelled", {"reason": "x"}, id="m1"),
            "m1",
            "order.cancelled",
            "data: missing 'order_id'",
        ),
        (
            stream.raw(
                b'{"specversion":"1.0","id":"t1","source":"/s","type":"stock.moved",'
                b'"time":"2026-11-25T10:00:00Z","data":{"sku":"A","warehouse":"W",'
                b'"quantity_delta":"5","reason":"receipt"}}',
                "pulse.events.stock.moved",
            ),
            "t1",
            "stock.moved",
            "data.quantity_delta: expected int, got str",
        ),
        (
            stream.order("O-9", total="1.005", lines=line, id="d1"),
            "d1",
            "order.created",
            "data.total_amount: more than 2 decimals",
        ),
        (
            stream.order("O-8", lines=line, id="z1", time="2026-11-25T10:00:00"),
            "z1",
            "order.created",
            "time has no timezone",
        ),
    ]


def test_every_bad_input_is_stored_with_raw_bytes_subject_sequence_and_reason(
    store: Store,
) -> None:
    stream = Stream()
    cases = bad_inputs(stream)
    good = stream.order("O-1", id="good")
    result = store.apply_batch([message for message, *_ in cases] + [good])
    assert (result.applied, result.rejected, result.duplicates) == (1, len(cases), 0)
    rows = {row["sequence"]: row for row in store.query("rejected_events", {}).wire}
    assert len(rows) == len(cases)
    for message, event_id, event_type, reason in cases:
        row = rows[message.sequence]
        assert row["subject"] == message.subject
        assert row["raw"] == message.data.decode("utf-8")
        assert (row["event_id"], row["event_type"]) == (event_id, event_type)
        assert row["reason"].startswith(reason), (row["reason"], reason)
        assert row["received_at"] == "2026-11-25T12:00:00+00:00"
    # The good event of the same batch went through.
    assert store.query("stock_levels", {}).wire == []
    assert store.stats()["events_rejected"] == len(cases)
    assert store.stats()["events_applied"] == 1


def test_order_id_created_twice_is_a_rejected_event(store: Store) -> None:
    stream = Stream()
    store.apply_batch([stream.order("O-1", id="e1")])
    second = stream.order("O-1", id="e2")
    store.apply_batch([second])
    row = store.query("rejected_events", {}).wire[0]
    assert row == {
        "sequence": second.sequence,
        "subject": "pulse.events.orders.created",
        "event_id": "e2",
        "event_type": "order.created",
        "reason": "order_id 'O-1' already created by event 'e1'",
        "received_at": "2026-11-25T12:00:00+00:00",
        "raw": second.data.decode(),
    }
    assert store.stats()["events_rejected"] == 1


def test_non_utf8_payload_is_kept_byte_for_byte(store: Store) -> None:
    stream = Stream()
    payload = b"\xff\xfe not json"
    store.apply_batch([stream.raw(payload)])
    raw = store.conn.execute("SELECT raw FROM rejected_events").fetchone()
    assert raw is not None and bytes(raw[0]) == payload
    shown = store.query("rejected_events", {}).wire[0]["raw"]
    assert shown.endswith(" not json")


def test_a_rejected_event_sent_again_is_stored_again_not_taken_for_a_duplicate(
    store: Store,
) -> None:
    stream = Stream()
    first = stream.event("foo.bar", {}, id="x1")
    store.apply_batch([first])
    second = stream.event("foo.bar", {}, id="x1")
    again = store.apply_batch([second])
    assert (again.rejected, again.duplicates) == (1, 0)
    rows = store.query("rejected_events", {}).wire
    assert [row["sequence"] for row in rows] == [second.sequence, first.sequence]
    assert store.stats()["events_duplicate"] == 0


def test_one_hundred_events_with_an_empty_id_are_one_hundred_stored_rejects(store: Store) -> None:
    stream = Stream()
    batch = [stream.order(f"O-{i}", id="") for i in range(60)]
    store.apply_batch(batch)
    # The rest in a later batch: de-duplication across batches must not merge them either.
    later = [stream.order(f"O-{i}", id="") for i in range(60, 100)]
    result = store.apply_batch(later)
    assert (result.rejected, result.duplicates) == (40, 0)
    rows = store.query("rejected_events", {"limit": 500}).wire
    assert sorted(row["sequence"] for row in rows) == [m.sequence for m in batch + later]
    assert {row["event_id"] for row in rows} == {""}
    assert {row["reason"] for row in rows} == {"not a CloudEvent: id: expected str of length >= 1"}
    assert store.stats()["events_rejected"] == 100


def test_rejects_sharing_an_id_in_one_batch_are_each_stored(store: Store) -> None:
    stream = Stream()
    messages = [stream.event("foo.bar", {}, id="same") for _ in range(5)]
    messages.append(stream.raw(b"garbage"))
    messages.append(stream.raw(b"garbage"))
    result = store.apply_batch(messages)
    assert (result.applied, result.rejected, result.duplicates) == (0, 7, 0)
    assert len(store.query("rejected_events", {}).wire) == 7


def test_a_valid_event_after_a_rejected_one_with_its_id_is_applied(store: Store) -> None:
    # A producer's corrected re-send: the rejected message did not make the id seen.
    stream = Stream()
    store.apply_batch([stream.order("O-1", id="e1", total="1.001")])
    result = store.apply_batch([stream.order("O-1", id="e1")])
    assert (result.applied, result.rejected, result.duplicates) == (1, 0, 0)
    # And a valid one applied stays a no-op when it comes again, even after a reject.
    store.apply_batch([stream.order("O-1", id="e1", total="bad")])
    again = store.apply_batch([stream.order("O-1", id="e1")])
    assert (again.applied, again.rejected, again.duplicates) == (0, 0, 1)
    assert store.stats()["events_rejected"] == 2


def test_an_event_rejected_while_applying_is_stored_again_when_sent_again(store: Store) -> None:
    stream = Stream()
    store.apply_batch([stream.order("O-1", id="e1")])
    store.apply_batch([stream.order("O-1", id="e2")])  # order id taken: rejected
    again = store.apply_batch([stream.order("O-1", id="e2")])
    assert (again.applied, again.rejected, again.duplicates) == (0, 1, 0)
    reasons = [row["reason"] for row in store.query("rejected_events", {}).wire]
    assert reasons == ["order_id 'O-1' already created by event 'e1'"] * 2


def test_a_redelivered_stream_message_is_not_stored_twice(store: Store) -> None:
    stream = Stream()
    bad = stream.raw(b"nope")
    store.apply_batch([bad])
    # JetStream delivers the same sequence again (a consumer reset): already applied.
    result = store.apply_batch([bad])
    assert (result.applied, result.rejected, result.duplicates) == (0, 0, 0)
    assert len(store.query("rejected_events", {}).wire) == 1


def test_rejected_events_are_the_latest_n_newest_first(store: Store) -> None:
    stream = Stream()
    store.apply_batch([stream.raw(b"nope") for _ in range(5)])
    latest = store.query("rejected_events", {"limit": 2})
    assert ([row["sequence"] for row in latest.wire], latest.next_offset) == ([5, 4], None)
    older = store.query("rejected_events", {"limit": 2, "offset": 4})
    assert [row["sequence"] for row in older.wire] == [1]
    assert len(store.query("rejected_events", {}).wire) == 5
