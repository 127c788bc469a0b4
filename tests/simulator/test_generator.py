"""Generated scenarios: deterministic, valid per the event contract, realistic enough."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import jsonschema
import pytest

from pulse_bi.simulator import generate
from pulse_bi.simulator.bad import BAD_KINDS
from pulse_bi.simulator.events import DUPLICATE_NO_MSG_ID, DUPLICATE_SAME_MSG_ID
from pulse_bi.simulator.expected import Ledger
from pulse_bi.simulator.rules import ContractError, validate
from tests.conftest import SUBJECTS as SUBJECT_SUFFIXES

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
START = END - timedelta(hours=48)

# The event contract of docs/EVENTS.md as a JSON Schema, written separately from the simulator's
# own rules so the two check each other.
MONEY: dict[str, Any] = {
    "anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^-?\d+(\.\d{1,2})?$"}]
}
TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
DATE: dict[str, Any] = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


DATA_SCHEMAS = {
    "order.created": obj(
        {
            "order_id": TEXT,
            "customer_id": TEXT,
            "channel": TEXT,
            "total_amount": MONEY,
            "lines": {
                "type": "array",
                "minItems": 1,
                "items": obj({"sku": TEXT, "quantity": {"type": "integer"}, "unit_price": MONEY}),
            },
        }
    ),
    "order.cancelled": obj({"order_id": TEXT, "reason": TEXT}),
    "invoice.issued": obj(
        {
            "invoice_id": TEXT,
            "customer_id": TEXT,
            "amount": MONEY,
            "issued_on": DATE,
            "due_date": DATE,
        },
        {"order_id": TEXT},
    ),
    "payment.received": obj({"payment_id": TEXT, "invoice_id": TEXT, "amount": MONEY}),
    "stock.moved": obj(
        {
            "sku": TEXT,
            "warehouse": TEXT,
            "quantity_delta": {"type": "integer"},
            "reason": {"enum": ["receipt", "shipment", "adjustment", "return"]},
        }
    ),
    "product.updated": obj(
        {
            "sku": TEXT,
            "name": TEXT,
            "category": TEXT,
            "reorder_point": {"type": "integer"},
            "unit_cost": MONEY,
        }
    ),
    "customer.updated": obj({"customer_id": TEXT, "name": TEXT}),
}
SUBJECTS = {name: f"pulse.events.{suffix}" for name, suffix in SUBJECT_SUFFIXES.items()}
ENVELOPE = {
    "type": "object",
    "required": ["specversion", "id", "source", "type", "time", "data"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": TEXT,
        "source": TEXT,
        "type": {"enum": list(SUBJECTS)},
        "time": {"type": "string", "pattern": r"T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"},
        "datacontenttype": {"const": "application/json"},
        "data": {"type": "object"},
    },
}


# Validators built once: jsonschema.validate() would check the schema on every call.
ENVELOPE_VALIDATOR = jsonschema.Draft202012Validator(ENVELOPE)
DATA_VALIDATORS = {t: jsonschema.Draft202012Validator(s) for t, s in DATA_SCHEMAS.items()}


def money_texts(raw: bytes) -> list[str]:
    """Every money value as written in the JSON text (numbers keep their digits)."""
    found: list[str] = []

    def keep(value: str) -> Decimal:
        found.append(value)
        return Decimal(value)

    json.loads(raw, parse_float=keep)
    return found


@pytest.fixture(scope="module")
def scenario() -> Any:
    return generate(11, 20_000, out_of_order=0.1, duplicates=0.04, bad=0.02, start=START, end=END)


def test_same_seed_and_window_give_identical_bytes_and_ids() -> None:
    first = generate(5, 3000, out_of_order=0.1, duplicates=0.05, bad=0.05, start=START, end=END)
    second = generate(5, 3000, out_of_order=0.1, duplicates=0.05, bad=0.05, start=START, end=END)
    assert first.messages == second.messages
    other = generate(6, 3000, out_of_order=0.1, duplicates=0.05, bad=0.05, start=START, end=END)
    assert {m.msg_id for m in first.messages}.isdisjoint(
        m.msg_id for m in other.messages if m.msg_id
    )


def test_ids_do_not_depend_on_the_window() -> None:
    now = generate(5, 500, end=END)
    later = generate(5, 500, end=END + timedelta(days=3))
    assert [m.msg_id for m in now.messages] == [m.msg_id for m in later.messages]


def test_faults_leave_the_business_events_unchanged() -> None:
    clean = generate(8, 2000, start=START, end=END)
    faulty = generate(8, 2000, duplicates=0.05, bad=0.04, start=START, end=END)
    ids = [m.msg_id for m in faulty.messages if m.kind == "event"]
    assert ids[:1500] == [m.msg_id for m in clean.messages][:1500]


def test_every_valid_event_follows_the_contract(scenario: Any) -> None:
    valid = [m for m in scenario.messages if m.kind != "bad"]
    assert len(valid) > 18_000
    for message in valid:
        document = json.loads(message.data)
        ENVELOPE_VALIDATOR.validate(document)
        DATA_VALIDATORS[document["type"]].validate(document["data"])
        assert message.subject == SUBJECTS[document["type"]]
        assert datetime.fromisoformat(document["time"]).tzinfo is not None
        for text in money_texts(message.data):
            assert not re.search(r"\.\d{3}", text), text
        if message.kind == "event":
            assert message.msg_id == document["id"]


def test_event_times_fall_inside_the_window(scenario: Any) -> None:
    for message in scenario.messages:
        if message.kind != "bad":
            time = datetime.fromisoformat(json.loads(message.data)["time"])
            assert START - timedelta(minutes=2) <= time <= END


def test_the_simulators_rules_accept_every_valid_event_and_reject_every_bad_one(
    scenario: Any,
) -> None:
    ledger = Ledger()
    for message in scenario.messages:
        if message.kind == "duplicate":
            continue
        rejected = ledger.rejected
        ledger.apply(message.subject, message.data)
        assert (ledger.rejected > rejected) == (message.kind == "bad"), message


def test_every_bad_kind_is_present(scenario: Any) -> None:
    kinds = Counter(m.detail for m in scenario.messages if m.kind == "bad")
    assert set(kinds) == set(BAD_KINDS)
    assert all(count >= 20 for count in kinds.values())


def test_every_bad_kind_appears_once_a_run_has_as_many_bad_messages() -> None:
    small = generate(3, 400, bad=0.05, start=START, end=END)
    bad = [m for m in small.messages if m.kind == "bad"]
    assert len(bad) >= len(BAD_KINDS)
    assert {m.detail for m in bad} == set(BAD_KINDS)


def test_bad_json_kind_is_not_valid_json(scenario: Any) -> None:
    for message in scenario.messages:
        if message.detail == "not_json":
            with pytest.raises(ContractError, match="invalid JSON"):
                validate(message.subject, message.data)


def test_duplicates_resend_an_earlier_event_in_two_flavours(scenario: Any) -> None:
    seen: dict[bytes, str | None] = {}
    flavours: Counter[str] = Counter()
    for message in scenario.messages:
        if message.kind == "duplicate":
            assert message.data in seen
            flavours[message.detail] += 1
            if message.detail == DUPLICATE_SAME_MSG_ID:
                assert message.msg_id == seen[message.data]
            else:
                assert message.detail == DUPLICATE_NO_MSG_ID
                assert message.msg_id is None
        elif message.kind == "event":
            seen[message.data] = message.msg_id
    total = sum(flavours.values())
    assert 0.03 < total / len(scenario.messages) < 0.05
    assert abs(flavours[DUPLICATE_SAME_MSG_ID] - flavours[DUPLICATE_NO_MSG_ID]) <= 1


def test_cancellations_and_payments_sometimes_overtake_their_parent(scenario: Any) -> None:
    orders: set[str] = set()
    invoices: set[str] = set()
    early_cancels = early_payments = 0
    for message in scenario.messages:
        if message.kind != "event":
            continue
        document = json.loads(message.data)
        data = document["data"]
        if document["type"] == "order.created":
            orders.add(data["order_id"])
        elif document["type"] == "order.cancelled" and data["order_id"] not in orders:
            early_cancels += 1
        elif document["type"] == "invoice.issued":
            invoices.add(data["invoice_id"])
        elif document["type"] == "payment.received" and data["invoice_id"] not in invoices:
            early_payments += 1
    assert early_cancels > 5
    assert early_payments > 20


def test_without_out_of_order_children_follow_their_parents() -> None:
    calm = generate(12, 5000, start=START, end=END)
    orders: set[str] = set()
    for message in calm.messages:
        document = json.loads(message.data)
        if document["type"] == "order.created":
            orders.add(document["data"]["order_id"])
        elif document["type"] == "order.cancelled":
            assert document["data"]["order_id"] in orders


def test_scenario_shows_the_variety_dashboards_need(scenario: Any) -> None:
    result = scenario.expected(date(2026, 11, 25))
    assert len(result["sales_by_hour_by_channel"]) >= 4
    assert len(result["sales_by_hour"]) >= 47  # every hour of the 48-hour window
    last_day = [r for r in result["sales_by_hour"] if r["hour"] >= "2026-11-24T12:00:00+00:00"]
    assert sum(r["orders"] for r in last_day) > 1000
    assert sum(r["cancelled_orders"] for r in result["sales_by_hour"]) > 50
    assert {r["bucket"] for r in result["overdue_invoices"]} == {
        "1-30",
        "31-60",
        "61-90",
        "over-90",
    }
    assert result["ar_aging"]["current"] != "0.00"
    assert result["low_stock"]
    assert all(r["on_hand"] >= 0 for r in result["stock_levels"])
    assert len({r["warehouse"] for r in result["stock_levels"]}) >= 3
    reasons = Counter(
        json.loads(m.data)["data"].get("reason")
        for m in scenario.messages
        if m.subject == "pulse.events.stock.moved" and m.kind == "event"
    )
    assert {"receipt", "shipment", "adjustment", "return"} <= set(reasons)
    assert any(r["paid"] != "0.00" for r in result["overdue_invoices"])  # partial payments


def test_money_goes_out_both_as_numbers_and_as_strings(scenario: Any) -> None:
    kinds: Counter[str] = Counter()
    for message in scenario.messages[:3000]:
        document = json.loads(message.data) if message.kind == "event" else None
        if document and document["type"] == "order.created":
            kinds[type(document["data"]["total_amount"]).__name__] += 1
    assert kinds["str"] > 0 and (kinds["float"] + kinds["int"]) > 0


def test_times_carry_utc_and_other_offsets(scenario: Any) -> None:
    offsets: Counter[timedelta | None] = Counter()
    for message in scenario.messages[:2000]:
        if message.kind == "event":
            offsets[datetime.fromisoformat(json.loads(message.data)["time"]).utcoffset()] += 1
    assert len(offsets) >= 2


def test_counts_add_up(scenario: Any) -> None:
    counts = scenario.expected()["counts"]
    kinds = Counter((m.kind, m.detail) for m in scenario.messages)
    assert counts["published"] == len(scenario.messages)
    assert counts["in_stream"] == counts["published"] - kinds["duplicate", DUPLICATE_SAME_MSG_ID]
    assert counts["rejected"] == sum(n for (kind, _), n in kinds.items() if kind == "bad")
    assert counts["duplicates"] == kinds["duplicate", DUPLICATE_NO_MSG_ID]
    assert counts["applied"] == kinds["event", ""]


@pytest.mark.parametrize(
    ("out_of_order", "duplicates", "bad"),
    [(0.0, 0.0, -0.1), (0.0, 1.5, 0.0), (0.0, 0.6, 0.6), (1.1, 0.0, 0.0)],
)
def test_fractions_out_of_range_are_refused(
    out_of_order: float, duplicates: float, bad: float
) -> None:
    with pytest.raises(ValueError):
        generate(1, 10, out_of_order=out_of_order, duplicates=duplicates, bad=bad)


def contract_violations(raw: bytes, subject: str) -> list[str]:
    """What the schema-based checks above find wrong with one message."""
    try:
        document = json.loads(raw)
    except ValueError:
        return ["not JSON"]
    problems = [e.message for e in ENVELOPE_VALIDATOR.iter_errors(document)]
    if problems:
        return problems
    problems = [e.message for e in DATA_VALIDATORS[document["type"]].iter_errors(document["data"])]
    if subject != SUBJECTS[document["type"]]:
        problems.append("subject")
    problems += [t for t in money_texts(raw) if re.search(r"\.\d{3}", t)]
    return problems


def test_the_contract_checks_catch_every_bad_kind_but_reused_order_ids(scenario: Any) -> None:
    for message in scenario.messages:
        if message.kind == "bad" and message.detail != "duplicate_order_id":
            assert contract_violations(message.data, message.subject), message
