"""The simulator's expected aggregates and the materializer's answers agree on one scenario.

The two are written independently (plain Python rules here, DuckDB SQL there); feeding the
same stream to both and comparing every named query catches a mistake in either.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from bench.paging import query_all
from materializer.app import Materializer
from materializer.store import RawMessage, Store
from pulse_bi.simulator import events as ev
from pulse_bi.simulator import generate, publish
from pulse_bi.simulator.events import SimMessage, stored_by_stream
from pulse_bi.simulator.expected import Ledger, expected_aggregates

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AS_OF = date(2026, 11, 25)
ALL_TIME = {"from": "2000-01-01T00:00:00+00:00", "to": "2100-01-01T00:00:00+00:00"}


def test_expected_aggregates_equal_the_materializers_named_queries(tmp_path: Path) -> None:
    scenario = generate(31, 12_000, out_of_order=0.1, duplicates=0.05, bad=0.02, end=END)
    expected = scenario.expected(AS_OF)
    # What JetStream stores, numbered in order as its stream sequence.
    stored = [
        RawMessage(sequence, message.subject, message.data, END)
        for sequence, message in enumerate(stored_by_stream(scenario.messages), start=1)
    ]
    assert len(stored) == expected["counts"]["in_stream"]

    store = Store.open(tmp_path / "agreement.duckdb")
    try:
        for start in range(0, len(stored), 3000):
            store.apply_batch(stored[start : start + 3000])
        assert query_all(store, "sales_by_hour", ALL_TIME, wire=True) == expected["sales_by_hour"]
        for channel, rows in expected["sales_by_hour_by_channel"].items():
            assert (
                query_all(store, "sales_by_hour", {**ALL_TIME, "channel": channel}, wire=True)
                == rows
            )
        assert (
            query_all(store, "sales_by_channel", ALL_TIME, wire=True)
            == expected["sales_by_channel"]
        )
        assert len(expected["sales_by_channel"]) > 1
        assert query_all(store, "stock_levels", {}, wire=True) == expected["stock_levels"]
        assert query_all(store, "low_stock", {}, wire=True) == expected["low_stock"]
        as_of = {"as_of": AS_OF.isoformat()}
        assert query_all(store, "ar_aging", as_of, wire=True) == expected["ar_aging"]
        assert (
            query_all(store, "overdue_invoices", as_of, wire=True) == expected["overdue_invoices"]
        )
        top = store.query("top_products", {**ALL_TIME, "limit": 10}).wire
        assert top == expected["top_products"]
        pipeline = query_all(store, "pipeline", {}, wire=True)
        assert pipeline["events_applied"] == expected["counts"]["applied"]
        assert pipeline["events_rejected"] == expected["counts"]["rejected"]
    finally:
        store.close()


async def test_an_invoice_id_issued_twice_is_rejected_alike_by_the_store_and_the_oracle(
    nc: NATS, materializer: Materializer
) -> None:
    # Published through the real stream and consumed by a running materializer; the
    # oracle reads the same messages. The second issue of I-1 (another event id, another
    # customer and amount) must be rejected by both, the first kept with its payments.
    due = AS_OF - timedelta(days=40)
    messages = [
        _invoice("e-pay", "payment.received", ev.payment_received("P-1", "I-1", Decimal(30))),
        _invoice("e-first", "invoice.issued", _issued("I-1", "C-1", "100.00", due)),
        _invoice("e-again", "invoice.issued", _issued("I-1", "C-2", "900.00", due)),
        _invoice("e-other", "invoice.issued", _issued("I-2", "C-2", "50.00", due)),
        _invoice("e-pay2", "payment.received", ev.payment_received("P-2", "I-1", Decimal(5))),
    ]
    stats = await publish(nc, messages)
    await materializer.wait_for_sequence(stats.stored)
    ledger = Ledger()
    for message in stored_by_stream(messages):
        ledger.apply(message.subject, message.data)
    expected = expected_aggregates(messages, as_of=AS_OF)

    store = materializer.store
    assert store is not None
    as_of = {"as_of": AS_OF.isoformat()}
    overdue = query_all(store, "overdue_invoices", as_of, wire=True)
    assert overdue == expected["overdue_invoices"]
    assert [(r["invoice_id"], r["customer_id"], r["balance"]) for r in overdue] == [
        ("I-1", "C-1", "65.00"),
        ("I-2", "C-2", "50.00"),
    ]
    assert query_all(store, "ar_aging", as_of, wire=True) == expected["ar_aging"]
    rejected = query_all(store, "rejected_events", {}, wire=True)
    assert [r["reason"] for r in rejected] == ledger.reasons
    assert ledger.reasons == ["invoice_id 'I-1' already issued by event 'e-first'"]
    pipeline = query_all(store, "pipeline", {}, wire=True)
    assert pipeline["events_applied"] == expected["counts"]["applied"] == 4
    assert pipeline["events_rejected"] == expected["counts"]["rejected"] == 1


def _issued(invoice_id: str, customer: str, amount: str, due: date) -> dict[str, Any]:
    issued_on = (due - timedelta(days=30)).isoformat()
    return ev.invoice_issued(invoice_id, customer, Decimal(amount), issued_on, due.isoformat())


def _invoice(event_id: str, event_type: str, data: dict[str, Any]) -> SimMessage:
    return ev.cloud_event(event_type, data, event_id=event_id, time=END)
