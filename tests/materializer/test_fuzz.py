"""Property tests (Hypothesis, bounded): any bytes and any mutation of a valid event go
through ``decode`` and ``Store.apply_batch`` without an exception; every message ends
applied, rejected or a duplicate, and the valid events give exactly their aggregates."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from materializer import limits
from materializer.events import EVENT_TYPES, Event, Rejection, _decode_checked, decode
from materializer.store import RawMessage, Store
from tests.materializer.eventkit import RECEIVED
from tests.materializer.poison import POISON

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STORE_FUZZ = settings(FUZZ, max_examples=15)

SUBJECTS = [t.subject for t in EVENT_TYPES.values()] + ["pulse.events.bad.input"]
MAX_MONEY = "9999999999999999.99"
EXTREMES: list[Any] = [
    "",
    "x" * 257,
    "é" * 300,
    "\x00",
    10**9 + 1,
    -(10**9) - 1,
    2**63,
    -(2**64),
    msgspec.Raw(b"1" * 4300),
    msgspec.Raw(b"1e999999"),
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:00:00Z",
    "2200-01-01T00:00:00Z",
    "1e16",
    "-1e16",
    "NaN",
    "1.001",
    True,
    None,
    [],
    {},
    [[[[[[]]]]]],
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(EXTREMES),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)


def valid_document(event_type: str, n: int = 0) -> dict[str, Any]:
    """A valid CloudEvent of ``event_type`` (the contract's shape, docs/EVENTS.md)."""
    data: dict[str, Any] = {
        "order.created": {
            "order_id": f"O-{n}",
            "customer_id": "C-1",
            "channel": "web",
            "total_amount": "12.30",
            "lines": [{"sku": "SKU-1", "quantity": 3, "unit_price": "4.10"}],
        },
        "order.cancelled": {"order_id": f"O-{n}", "reason": "changed mind"},
        "invoice.issued": {
            "invoice_id": f"I-{n}",
            "customer_id": "C-1",
            "amount": "99.99",
            "issued_on": "2026-11-01",
            "due_date": "2026-12-01",
        },
        "payment.received": {"payment_id": f"P-{n}", "invoice_id": "I-1", "amount": "9.99"},
        "stock.moved": {"sku": "SKU-1", "warehouse": "W", "quantity_delta": 5, "reason": "receipt"},
        "product.updated": {
            "sku": "SKU-1",
            "name": "Widget",
            "category": "tools",
            "reorder_point": 3,
            "unit_cost": "1.50",
        },
        "customer.updated": {"customer_id": "C-1", "name": "Acme"},
    }[event_type]
    return {
        "specversion": "1.0",
        "id": f"e-{event_type}-{n}",
        "source": "/fuzz",
        "type": event_type,
        "time": "2026-11-25T10:04:05Z",
        "data": data,
    }


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid event with one structured change: a field replaced, removed or added
    (arbitrary JSON or an extreme value), or its bytes cut, flipped or extended."""
    event_type = draw(st.sampled_from(sorted(EVENT_TYPES)))
    document = valid_document(event_type)
    subject = EVENT_TYPES[event_type].subject
    where = draw(st.sampled_from(["envelope", "data", "line", "bytes", "subject"]))
    target = document
    if where == "data" or (where == "line" and event_type != "order.created"):
        target = document["data"]
    elif where == "line":
        target = document["data"]["lines"][0]
    if where == "subject":
        subject = draw(st.sampled_from(SUBJECTS))
    elif where != "bytes":
        key = draw(st.sampled_from(sorted(target)) | st.text(max_size=6))
        action = draw(st.sampled_from(["replace", "extreme", "remove"]))
        if action == "remove":
            target.pop(key, None)
        elif action == "extreme":
            target[key] = draw(st.sampled_from(EXTREMES))
        else:
            target[key] = draw(json_values)
    payload = msgspec.json.encode(document)
    if where == "bytes":
        position = draw(st.integers(0, len(payload)))
        cut = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if cut == "truncate":
            payload = payload[:position]
        elif cut == "flip" and position < len(payload):
            byte = payload[position] ^ draw(st.integers(1, 255))
            payload = payload[:position] + bytes([byte]) + payload[position + 1 :]
        else:
            payload = payload[:position] + draw(st.binary(max_size=8)) + payload[position:]
    return subject, payload


def check_within_limits(event: Event) -> None:
    """Whatever decodes as an event keeps every limit of docs/EVENTS.md."""
    assert 1 <= len(event.id) <= limits.MAX_ID_LENGTH
    assert limits.TIME_MIN <= event.time < limits.TIME_MAX
    pending: list[Any] = [msgspec.structs.asdict(event.data)]
    while pending:
        fields = pending.pop()
        for name, value in fields.items():
            if isinstance(value, list):
                assert len(value) <= limits.MAX_LINES
                pending.extend(msgspec.structs.asdict(item) for item in value)
            elif isinstance(value, Decimal):
                assert abs(value) < limits.MONEY_LIMIT and value == round(value, 2), name
            elif isinstance(value, bool):
                raise AssertionError(f"{name}: a bool got through")
            elif isinstance(value, int):
                assert abs(value) <= limits.MAX_QUANTITY, name
            elif isinstance(value, date) and not isinstance(value, datetime):
                assert limits.DATE_MIN <= value < limits.DATE_MAX, name
            elif isinstance(value, str):
                assert len(value) <= limits.MAX_TEXT_LENGTH, name


@FUZZ
@given(st.sampled_from(SUBJECTS), st.binary(max_size=3000))
def test_decode_turns_any_bytes_into_an_event_or_a_rejection(subject: str, payload: bytes) -> None:
    result = decode(subject, payload)
    assert isinstance(result, Event | Rejection)
    if isinstance(result, Event):  # pragma: no cover - random bytes are never an event
        check_within_limits(result)


@FUZZ
@given(mutated_events())
def test_decode_turns_any_mutated_event_into_an_event_or_a_rejection(
    message: tuple[str, bytes],
) -> None:
    result = decode(*message)
    assert isinstance(result, Event | Rejection)
    if isinstance(result, Event):
        check_within_limits(result)
    else:
        assert result.reason and len(result.reason) <= 500


def _outcome(result: Event | Rejection) -> tuple[Any, ...]:
    """A decode result as plain values: an event of the strict fast path and one of the
    checked path are instances of different classes."""
    if isinstance(result, Rejection):
        return ("rejected", result.reason, result.id, result.type)
    return ("event", result.type, result.id, result.time, msgspec.to_builtins(result.data))


@st.composite
def events_with_extra_fields(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid event with fields outside the contract (any JSON, nested or not) in its
    envelope, data or lines, then maybe a mutation of its bytes."""
    event_type = draw(st.sampled_from(sorted(EVENT_TYPES)))
    document = valid_document(event_type)
    targets = [document, document["data"]]
    if event_type == "order.created":
        targets.append(document["data"]["lines"][0])
    for target in draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3)):
        name = "x-" + draw(st.text(max_size=6))  # no field of the contract
        target[name] = draw(json_values | st.sampled_from(EXTREMES))
    payload = msgspec.json.encode(document)
    if draw(st.booleans()):
        position = draw(st.integers(0, len(payload)))
        payload = payload[:position] + draw(st.binary(min_size=1, max_size=4)) + payload[position:]
    return EVENT_TYPES[event_type].subject, payload


@FUZZ
@given(mutated_events() | events_with_extra_fields())
def test_the_strict_fast_path_decides_as_every_check_in_order(message: tuple[str, bytes]) -> None:
    """``decode`` first tries a decoder that refuses any field outside the contract, before
    the UTF-8 and nesting checks: whatever it decides, the checks in their order decide
    the same (docs/EVENTS.md: the reasons and their order)."""
    assert _outcome(decode(*message)) == _outcome(_decode_checked(*message))


def test_the_strict_fast_path_decides_as_every_check_in_order_on_poison() -> None:
    for _, payload, _ in POISON:
        subject = EVENT_TYPES["order.created"].subject
        assert _outcome(decode(subject, payload)) == _outcome(_decode_checked(subject, payload))


# Through the store -------------------------------------------------------------------

valid_moves = st.builds(
    lambda sku, delta: ("move", sku, delta),
    st.sampled_from(["SKU-1", "SKU-2"]),
    st.sampled_from([1, -1, 7, 10**9, -(10**9)]),
)
valid_orders = st.builds(
    lambda channel, total, time: ("order", channel, total, time),
    st.sampled_from(["web", "store"]),
    st.sampled_from(["0.01", "12.34", MAX_MONEY]),
    st.sampled_from(
        ["1970-01-01T00:00:00Z", "2026-11-25T10:04:05+02:00", "2199-12-31T23:59:59.999999Z"]
    ),
)


@st.composite
def invalid_payloads(draw: st.DrawFn) -> bytes:
    """Messages that can never be a valid event, whatever is drawn."""
    kind = draw(st.sampled_from(["poison", "truncated", "bad byte", "bad value"]))
    if kind == "poison":
        return draw(st.sampled_from([payload for _, payload, _ in POISON]))
    document = valid_document("stock.moved", draw(st.integers(0, 5)))
    if kind == "truncated":  # a JSON object cut short is never complete
        payload = msgspec.json.encode(document)
        return payload[: draw(st.integers(0, len(payload) - 1))]
    if kind == "bad byte":  # 0xff is never valid UTF-8, so never valid JSON
        return b"\xff" + draw(st.binary(max_size=50))
    field, value = draw(
        st.sampled_from(
            [
                ("quantity_delta", 10**9 + 1),
                ("quantity_delta", "5"),
                ("quantity_delta", msgspec.Raw(b"1" * 4300)),
                ("sku", ""),
                ("warehouse", "w" * 257),
                ("reason", "stolen"),
            ]
        )
    )
    document["data"][field] = value
    if draw(st.booleans()):
        document["time"] = draw(st.sampled_from(["9999-12-31T23:00:00-05:00", "0001-01-01"]))
    return msgspec.json.encode(document)


stream_items = st.lists(
    st.one_of(
        valid_moves,
        valid_orders,
        st.builds(lambda payload: ("invalid", payload), invalid_payloads()),
        st.just(("resend",)),
    ),
    min_size=1,
    max_size=40,
)


@STORE_FUZZ
@given(stream_items, st.lists(st.integers(1, 15), min_size=1, max_size=6))
def test_apply_batch_accounts_for_every_message_and_keeps_the_valid_aggregates(
    items: list[tuple[Any, ...]], sizes: list[int]
) -> None:
    messages: list[RawMessage] = []
    sent: list[RawMessage] = []
    on_hand: defaultdict[str, int] = defaultdict(int)
    orders: defaultdict[str, list[Decimal]] = defaultdict(list)
    invalid = duplicates = 0
    for item in items:
        sequence = len(messages) + 1
        if item[0] == "invalid":
            invalid += 1
            messages.append(RawMessage(sequence, "pulse.events.stock.moved", item[1], RECEIVED))
            continue
        if item[0] == "resend":
            if not sent:
                continue
            original = sent[len(messages) % len(sent)]
            duplicates += 1
            messages.append(RawMessage(sequence, original.subject, original.data, RECEIVED))
            continue
        document = valid_document("stock.moved" if item[0] == "move" else "order.created", sequence)
        if item[0] == "move":
            document["data"].update(sku=item[1], quantity_delta=item[2])
            on_hand[item[1]] += item[2]
        else:
            _, channel, total, time = item
            document["data"].update(channel=channel, total_amount=total)
            document["time"] = time
            orders[channel].append(Decimal(total))
        subject = EVENT_TYPES[document["type"]].subject
        message = RawMessage(sequence, subject, msgspec.json.encode(document), RECEIVED)
        sent.append(message)
        messages.append(message)
    applied = len(sent)

    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(Path(folder) / "fuzz.duckdb")
        try:
            totals = [0, 0, 0]
            start = 0
            for index in range(len(messages)):
                size = sizes[index % len(sizes)]
                if start >= len(messages):
                    break
                result = store.apply_batch(messages[start : start + size])
                totals[0] += result.applied
                totals[1] += result.rejected
                totals[2] += result.duplicates
                start += size
            assert totals == [applied, invalid, duplicates]
            assert store.last_sequence() == len(messages)
            state = store.stats()
            assert (state["events_applied"], state["events_rejected"]) == (applied, invalid)
            rejected = store.query("rejected_events", {"limit": 100}).wire
            assert len(rejected) == invalid
            levels = {row["sku"]: row["on_hand"] for row in store.query("stock_levels", {}).wire}
            assert levels == {sku: total for sku, total in on_hand.items()}
            window = {"from": "1970-01-01T00:00:00Z", "to": "2200-01-01T00:00:00Z"}
            for channel in ("web", "store"):
                summary = store.query("sales_summary", {**window, "channel": channel}).wire
                assert summary["orders"] == len(orders[channel])
                assert Decimal(summary["gross_revenue"]) == sum(orders[channel], Decimal(0))
        finally:
            store.close()
