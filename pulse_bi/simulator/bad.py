"""Bad input of every kind the contract lists, as producers get it wrong in practice."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pulse_bi.contract import EVENT_SUBJECT_PREFIX
from pulse_bi.simulator import events as ev
from pulse_bi.simulator.catalog import WAREHOUSES
from pulse_bi.simulator.events import SimMessage
from pulse_bi.simulator.world import World

#: Every kind of bad input of the contract; each must be rejected with a reason.
BAD_KINDS = (
    "not_json",
    "not_cloudevent",
    "unknown_type",
    "missing_field",
    "mistyped_field",
    "too_many_decimals",
    "time_without_timezone",
    "duplicate_order_id",
)

#: Data fields that may not be left out, per event type (invoice order_id is optional).
REQUIRED_FIELDS = {
    "order.created": ("order_id", "customer_id", "channel", "total_amount", "lines"),
    "invoice.issued": ("invoice_id", "customer_id", "amount", "issued_on", "due_date"),
    "payment.received": ("payment_id", "invoice_id", "amount"),
    "stock.moved": ("sku", "warehouse", "quantity_delta", "reason"),
    "product.updated": ("sku", "name", "category", "reorder_point", "unit_cost"),
}


class BadInput:
    """Makes bad messages from its own random stream, so the valid events stay the same."""

    def __init__(self, rng: random.Random, world: World) -> None:
        self.rng = rng
        self.world = world
        self.counter = itertools.count(1)
        kinds = list(BAD_KINDS)
        rng.shuffle(kinds)
        # Kinds come round in turn so a short run with a few bad events shows them all.
        self.kinds = itertools.cycle(kinds)

    def next_message(self, now: datetime) -> SimMessage:
        """The next bad message; its ``detail`` names the kind."""
        while True:
            kind = next(self.kinds)
            message = getattr(self, "_" + kind)(now)
            if message is not None:
                return message

    def event_id(self) -> str:
        """A fresh event id from this stream."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _sample(self, now: datetime) -> tuple[str, dict[str, Any]]:
        """A plausible event of a random type, with ids no valid event uses."""
        rng, world = self.rng, self.world
        n = next(self.counter)
        customer_id = rng.choice(world.customers)[0]
        product = rng.choice(world.products)
        event_type = rng.choice(tuple(REQUIRED_FIELDS))
        if event_type == "order.created":
            price = product.price
            lines = [(product.sku, rng.randint(1, 4), price)]
            data = ev.order_created(f"SO-{world.tag}-X{n:06d}", customer_id, "web", lines)
        elif event_type == "invoice.issued":
            day = now.date()
            due = (day + timedelta(days=30)).isoformat()
            amount = Decimal(rng.randint(1000, 90000)) / 100
            data = ev.invoice_issued(
                f"INV-{world.tag}-X{n:06d}", customer_id, amount, day.isoformat(), due
            )
        elif event_type == "payment.received":
            amount = Decimal(rng.randint(1000, 90000)) / 100
            data = ev.payment_received(
                f"PAY-{world.tag}-X{n:06d}", f"INV-{world.tag}-X{n:06d}", amount
            )
        elif event_type == "stock.moved":
            data = ev.stock_moved(
                product.sku, rng.choice(WAREHOUSES), rng.randint(-5, -1), "shipment"
            )
        else:
            data = ev.product_updated(
                product.sku, product.name, product.category, 10, product.unit_cost
            )
        return event_type, data

    def _message(
        self, kind: str, subject: str, body: bytes, event_id: str | None = None
    ) -> SimMessage:
        return SimMessage(subject, body, event_id or self.event_id(), "bad", kind)

    def _event(self, kind: str, event_type: str, data: Any, time: str) -> SimMessage:
        event_id = self.event_id()
        body = ev.encode(ev.envelope(event_type, event_id, time, data))
        return self._message(kind, ev.subject_for(event_type), body, event_id)

    def _not_json(self, now: datetime) -> SimMessage:
        event_type, data = self._sample(now)
        event_id = self.event_id()
        full = ev.encode(ev.envelope(event_type, event_id, ev.format_time(now), data))
        variants = (
            full[: len(full) // 2],  # cut off mid-message
            full[:-1] + b",}",  # a trailing comma
            b"ORDER;" + event_id.encode() + b";web;12.30\n",  # a legacy CSV line
            b"\xff\xfe" + full,  # a byte-order mark from a Windows tool, not UTF-8
        )
        body = self.rng.choice(variants)
        return self._message("not_json", ev.subject_for(event_type), body, event_id)

    def _not_cloudevent(self, now: datetime) -> SimMessage:
        event_type, data = self._sample(now)
        event_id = self.event_id()
        document = ev.envelope(event_type, event_id, ev.format_time(now), data)
        variant = self.rng.randrange(4)
        body: Any
        if variant == 0:
            body = [document]  # a batch array instead of one event
        elif variant == 1:
            body = data  # bare data, no envelope
        elif variant == 2:
            body = {**document, "specversion": "0.3"}
        else:
            body = {k: v for k, v in document.items() if k != "id"}
        return self._message(
            "not_cloudevent", ev.subject_for(event_type), ev.encode(body), event_id
        )

    def _unknown_type(self, now: datetime) -> SimMessage:
        event_type, subject_suffix, data = self.rng.choice(
            (
                ("order.refunded", "orders.refunded", {"order_id": "SO-1", "amount": "10.00"}),
                ("shipment.delayed", "shipments.delayed", {"shipment_id": "SH-1", "days": 2}),
            )
        )
        event_id = self.event_id()
        body = ev.encode(ev.envelope(event_type, event_id, ev.format_time(now), data))
        return self._message("unknown_type", EVENT_SUBJECT_PREFIX + subject_suffix, body, event_id)

    def _missing_field(self, now: datetime) -> SimMessage:
        event_type, data = self._sample(now)
        missing = self.rng.choice(REQUIRED_FIELDS[event_type])
        data = {k: v for k, v in data.items() if k != missing}
        return self._event("missing_field", event_type, data, ev.format_time(now))

    def _mistyped_field(self, now: datetime) -> SimMessage:
        event_type, data = self._sample(now)
        if event_type == "order.created":
            choice = self.rng.randrange(3)
            if choice == 0:
                data["lines"][0]["quantity"] = "two"
            elif choice == 1:
                data["lines"] = f"{data['lines'][0]['sku']} x2"
            else:
                data["customer_id"] = 4711
        elif event_type == "invoice.issued":
            data["due_date"] = "next week"
        elif event_type == "payment.received":
            data["amount"] = self.rng.choice(("twelve", True))
        elif event_type == "stock.moved":
            data["quantity_delta"] = self.rng.choice((2.5, "-3"))
        else:
            data["reorder_point"] = "ten"
        return self._event("mistyped_field", event_type, data, ev.format_time(now))

    def _too_many_decimals(self, now: datetime) -> SimMessage:
        event_type, data = self._sample(now)
        fraction = Decimal(self.rng.randint(1, 9)) / 1000  # a third decimal place
        if event_type == "order.created":
            line = data["lines"][0]
            line["unit_price"] = Decimal(line["unit_price"]) + fraction
            data["total_amount"] = str(line["unit_price"] * line["quantity"])
        elif event_type in ("invoice.issued", "payment.received"):
            data["amount"] = Decimal(data["amount"]) + fraction
        elif event_type == "product.updated":
            data["unit_cost"] = str(Decimal(data["unit_cost"]) + fraction)
        else:
            return self._too_many_decimals(now)  # stock.moved carries no money
        return self._event("too_many_decimals", event_type, data, ev.format_time(now))

    def _time_without_timezone(self, now: datetime) -> SimMessage:
        event_type, data = self._sample(now)
        naive = now.replace(tzinfo=None).isoformat()
        return self._event("time_without_timezone", event_type, data, naive)

    def _duplicate_order_id(self, now: datetime) -> SimMessage | None:
        if not self.world.recent_orders:
            return None
        order_id, original = self.rng.choice(self.world.recent_orders)
        # The same order id again under a new event id, as a buggy retry that rebuilt it.
        data = {**original, "channel": "phone", "order_id": order_id}
        return self._event("duplicate_order_id", "order.created", data, ev.format_time(now))
