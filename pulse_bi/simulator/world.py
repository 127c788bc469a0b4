"""A small simulated business whose activity becomes contract events.

Everything random comes from the world's one ``random.Random(seed)``, so a seed and the
same clock give the same events byte for byte, with the same ids.
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any

from pulse_bi.simulator import events as ev
from pulse_bi.simulator.catalog import (
    CANCEL_REASONS,
    CATEGORIES,
    CHANNELS,
    WAREHOUSES,
    customer_name,
    product_name,
)
from pulse_bi.simulator.events import SimMessage

CENT = Decimal("0.01")
#: Share of orders that get cancelled, and of cancelled orders cancelled a second time.
CANCEL_RATE = 0.07
DOUBLE_CANCEL_RATE = 0.15
#: Indexes of the products that are back-ordered (never restocked by purchasing).
BACKORDERED = (1, 4, 7)
#: Offsets some producers stamp their local time with (the rest send UTC).
_LOCAL_OFFSETS = (timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)))


@dataclass(slots=True)
class Product:
    """A catalog item as the simulated ERP knows it."""

    sku: str
    name: str
    category: str
    reorder_point: int
    unit_cost: Decimal
    price: Decimal


@dataclass(slots=True)
class _Queued:
    message: SimMessage
    #: For order.created: (order_id, data), so bad input can reuse a published order id.
    order: tuple[str, dict[str, Any]] | None = None


class World:
    """The simulated business: catalog, customers, stock and pending follow-ups."""

    def __init__(self, seed: int, *, scale: int, out_of_order: float) -> None:
        self.rng = random.Random(seed)
        self.out_of_order = out_of_order
        # A per-seed tag keeps order, invoice and payment ids of different seeds apart.
        self.tag = f"{self.rng.getrandbits(32):08X}"
        self.counter = itertools.count(1)
        n_products = max(12, min(300, scale // 200))
        n_customers = max(8, min(1000, scale // 100))
        self.products = [self._new_product(i) for i in range(n_products)]
        # A few popular items whose supplier is late: purchasing cannot restock them, so
        # they stay at or below their reorder point and `lowStock` always has something.
        self.backordered: set[str] = set()
        for index in BACKORDERED:
            product = self.products[index]
            product.reorder_point = product.reorder_point or 10
            self.backordered.add(product.sku)
        # Popularity follows a long tail: a few products and customers dominate.
        self.product_weights = list(
            itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(n_products))
        )
        self.customers = [(f"C-{i + 1:04d}", customer_name(i)) for i in range(n_customers)]
        self.customer_weights = list(
            itertools.accumulate(1.0 / (i + 1) ** 0.6 for i in range(n_customers))
        )
        self.stock: dict[tuple[str, str], int] = {}
        self.queue: deque[_Queued] = deque()
        self.later: list[tuple[int, int, Callable[[datetime], None]]] = []
        self.tick = 0
        self.bootstrap = self._bootstrap_steps()
        #: Recently published valid messages and orders (for duplicates and bad input).
        self.recent: deque[SimMessage] = deque(maxlen=48)
        self.recent_orders: deque[tuple[str, dict[str, Any]]] = deque(maxlen=32)

    # -- plumbing ---------------------------------------------------------------------

    def next_message(self, now: datetime) -> SimMessage:
        """The next valid event of the business, stamped at ``now`` or a little before."""
        while not self.queue:
            self._advance(now)
        item = self.queue.popleft()
        self.recent.append(item.message)
        if item.order is not None:
            self.recent_orders.append(item.order)
        return item.message

    def event_id(self) -> str:
        """A fresh event id (a UUID drawn from the seeded generator)."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def stamp(self, moment: datetime) -> str:
        """The event time as a producer would write it: mostly UTC, some local offsets."""
        roll = self.rng.random()
        if roll < 0.8:
            return ev.format_time(moment)
        if roll < 0.9:
            return moment.isoformat()
        return moment.astimezone(self.rng.choice(_LOCAL_OFFSETS)).isoformat()

    def emit(self, event_type: str, data: dict[str, Any], moment: datetime) -> None:
        """Queue one valid event for publishing."""
        message = ev.cloud_event(
            event_type, data, event_id=self.event_id(), time=self.stamp(moment)
        )
        order = (data["order_id"], data) if event_type == "order.created" else None
        self.queue.append(_Queued(message, order))

    def schedule(self, delay: int, action: Callable[[datetime], None]) -> None:
        """Run ``action`` ``delay`` ticks from now (a follow-up such as a payment)."""
        heapq.heappush(self.later, (self.tick + delay, next(self.counter), action))

    def new_id(self, prefix: str) -> str:
        """A business id unique within this seed."""
        return f"{prefix}-{self.tag}-{next(self.counter):07d}"

    def strings(self) -> bool:
        """Whether this producer sends money as decimal strings rather than numbers."""
        return self.rng.random() < 0.25

    def _advance(self, now: datetime) -> None:
        self.tick += 1
        if self.later and self.later[0][0] <= self.tick:
            while self.later and self.later[0][0] <= self.tick:
                heapq.heappop(self.later)[2](now)
            return
        step = next(self.bootstrap, None)
        if step is not None:
            step(now)
            return
        action = self.rng.choices(self._actions, cum_weights=self._action_weights)[0]
        action(self, now)

    # -- catalog ----------------------------------------------------------------------

    def _new_product(self, index: int) -> Product:
        rng = self.rng
        category = list(CATEGORIES)[index % len(CATEGORIES)]
        prefix = CATEGORIES[category][0]
        cost = Decimal(rng.randint(150, 40000)) / 100
        price = (cost * Decimal(rng.uniform(1.3, 2.2))).quantize(Decimal(1)) + Decimal("0.99")
        reorder = 0 if rng.random() < 0.1 else rng.choice((5, 10, 15, 20, 25, 40, 50))
        return Product(
            sku=f"{prefix}-{index + 1:04d}",
            name=product_name(category, index // len(CATEGORIES)),
            category=category,
            reorder_point=reorder,
            unit_cost=cost,
            price=price,
        )

    def _bootstrap_steps(self) -> Iterator[Callable[[datetime], None]]:
        for customer_id, name in self.customers:
            yield partial(self._publish_customer, customer_id, name)
        for product in self.products:
            yield partial(self._publish_product, product)
        for product in self.products:
            for warehouse in WAREHOUSES:
                if self.rng.random() < 0.75 and product.sku not in self.backordered:
                    base = product.reorder_point or 20
                    quantity = max(1, int(base * self.rng.uniform(0.3, 3.5)))
                    yield partial(self._move, product.sku, warehouse, quantity, "receipt")

    def _publish_customer(self, customer_id: str, name: str, now: datetime) -> None:
        self.emit("customer.updated", ev.customer_updated(customer_id, name), now)

    def _publish_product(self, product: Product, now: datetime) -> None:
        data = ev.product_updated(
            product.sku,
            product.name,
            product.category,
            product.reorder_point,
            product.unit_cost,
            strings=self.strings(),
        )
        self.emit("product.updated", data, now)

    def _move(self, sku: str, warehouse: str, delta: int, reason: str, now: datetime) -> None:
        self.stock[sku, warehouse] = self.stock.get((sku, warehouse), 0) + delta
        self.emit("stock.moved", ev.stock_moved(sku, warehouse, delta, reason), now)

    # -- business activity ------------------------------------------------------------

    def _order(self, now: datetime) -> None:
        rng = self.rng
        order_id = self.new_id("SO")
        customer_id = rng.choices(self.customers, cum_weights=self.customer_weights)[0][0]
        channel = rng.choices([c for c, _ in CHANNELS], weights=[w for _, w in CHANNELS])[0]
        wanted = rng.choices((1, 2, 3, 4, 5), weights=(35, 30, 20, 10, 5))[0]
        picked = rng.choices(self.products, cum_weights=self.product_weights, k=wanted)
        lines: list[tuple[str, int, Decimal]] = []
        for item in {p.sku: p for p in picked}.values():  # one line per product
            quantity = rng.choices((1, 2, 3, 4, 6, 10, 24), weights=(40, 25, 12, 8, 6, 5, 4))[0]
            price = item.price
            if rng.random() < 0.2:  # promotions and negotiated prices
                price = (price * Decimal(rng.choice(("0.95", "0.9", "0.85")))).quantize(CENT)
            lines.append((item.sku, quantity, price))
        data = ev.order_created(order_id, customer_id, channel, lines, strings=self.strings())
        total = sum((q * p for _, q, p in lines), Decimal(0))
        if rng.random() < CANCEL_RATE:
            if rng.random() < self.out_of_order:
                # The cancellation overtakes its order (another producer, a retry).
                placed = now - timedelta(seconds=rng.randint(1, 90))
                self._cancel(order_id, now)
                self.emit("order.created", data, placed)
            else:
                self.emit("order.created", data, now)
                self.schedule(rng.randint(3, 150), lambda t: self._cancel(order_id, t))
            if rng.random() < DOUBLE_CANCEL_RATE:
                self.schedule(rng.randint(151, 400), lambda t: self._cancel(order_id, t))
            return
        self.emit("order.created", data, now)
        self.schedule(rng.randint(2, 40), lambda t: self._ship(lines, t))
        if rng.random() < 0.7:
            terms = rng.choice((14, 30, 30, 45))
            self.schedule(
                rng.randint(5, 80),
                lambda t: self._invoice(customer_id, total, t, t.date(), terms, order_id),
            )

    def _cancel(self, order_id: str, now: datetime) -> None:
        reason = self.rng.choice(CANCEL_REASONS)
        self.emit("order.cancelled", ev.order_cancelled(order_id, reason), now)

    def _ship(self, lines: list[tuple[str, int, Decimal]], now: datetime) -> None:
        for sku, quantity, _ in lines:
            warehouse = max(WAREHOUSES, key=lambda w: self.stock.get((sku, w), 0))
            if self.stock.get((sku, warehouse), 0) < quantity:
                # An emergency restock; a back-ordered item gets just what ships.
                extra = 0 if sku in self.backordered else 30
                self._move(sku, warehouse, quantity + extra, "receipt", now)
            self._move(sku, warehouse, -quantity, "shipment", now)

    def _invoice(
        self,
        customer_id: str,
        amount: Decimal,
        now: datetime,
        issued_on: date,
        terms: int,
        order_id: str | None = None,
    ) -> None:
        rng = self.rng
        invoice_id = self.new_id("INV")
        data = ev.invoice_issued(
            invoice_id,
            customer_id,
            amount,
            issued_on.isoformat(),
            (issued_on + timedelta(days=terms)).isoformat(),
            order_id=order_id,
            strings=self.strings(),
        )
        roll = rng.random()
        if roll < 0.5:
            payments = [amount]
        elif roll < 0.75:
            first = (amount * Decimal(rng.uniform(0.2, 0.8))).quantize(CENT)
            payments = [first, amount - first] if rng.random() < 0.5 else [first]
        else:
            payments = []
        payments = [p for p in payments if p > 0]
        if payments and rng.random() < self.out_of_order:
            # The payment is booked before its invoice reaches the stream.
            self._pay(invoice_id, payments.pop(0), now)
            self.emit("invoice.issued", data, now - timedelta(seconds=rng.randint(1, 60)))
        else:
            self.emit("invoice.issued", data, now)
        delay = 0
        for payment in payments:
            delay += rng.randint(10, 300)
            self.schedule(delay, partial(self._pay, invoice_id, payment))

    def _pay(self, invoice_id: str, amount: Decimal, now: datetime) -> None:
        data = ev.payment_received(self.new_id("PAY"), invoice_id, amount, strings=self.strings())
        self.emit("payment.received", data, now)

    def _older_invoice(self, now: datetime) -> None:
        """An invoice for services billed weeks ago: fills every aging bucket."""
        customer_id = self.rng.choices(self.customers, cum_weights=self.customer_weights)[0][0]
        amount = Decimal(self.rng.randint(5000, 800000)) / 100
        issued_on = now.date() - timedelta(days=self.rng.randint(0, 150))
        self._invoice(customer_id, amount, now, issued_on, self.rng.choice((14, 30)))

    def _receipt(self, now: datetime) -> None:
        # Purchasing restocks the lowest of a few candidates, so some items stay low.
        candidates = [
            (self.rng.choice(self.products), self.rng.choice(WAREHOUSES)) for _ in range(3)
        ]
        candidates = [c for c in candidates if c[0].sku not in self.backordered]
        if not candidates:
            return
        product, warehouse = min(
            candidates, key=lambda c: self.stock.get((c[0].sku, c[1]), 0) - c[0].reorder_point
        )
        quantity = max(20, product.reorder_point * self.rng.randint(2, 4))
        self._move(product.sku, warehouse, quantity, "receipt", now)

    def _adjust(self, now: datetime) -> None:
        product = self.rng.choice(self.products)
        warehouse = self.rng.choice(WAREHOUSES)
        delta = self.rng.choice((-5, -3, -2, -1, 1, 2))
        if product.sku in self.backordered and delta > 0:
            return  # a stock count of a back-ordered item finds nothing extra
        if self.stock.get((product.sku, warehouse), 0) + delta < 0:
            delta = -delta  # a stock count finds more, never less than nothing
        self._move(product.sku, warehouse, delta, "adjustment", now)

    def _return(self, now: datetime) -> None:
        product = self.rng.choices(self.products, cum_weights=self.product_weights)[0]
        warehouse, quantity = self.rng.choice(WAREHOUSES), self.rng.randint(1, 3)
        if product.sku not in self.backordered:  # returns of those go back to the supplier
            self._move(product.sku, warehouse, quantity, "return", now)

    def _update_product(self, now: datetime) -> None:
        product = self.rng.choice(self.products)
        factor = Decimal(self.rng.uniform(0.95, 1.08))
        product.unit_cost = max(CENT, (product.unit_cost * factor).quantize(CENT))
        if product.reorder_point and self.rng.random() < 0.5:
            product.reorder_point = max(5, product.reorder_point + self.rng.choice((-5, 5, 10)))
        self._publish_product(product, now)

    def _update_customer(self, now: datetime) -> None:
        index = self.rng.randrange(len(self.customers))
        customer_id, name = self.customers[index]
        name = name + " (new address)" if "(" not in name else name.split(" (")[0]
        self.customers[index] = (customer_id, name)
        self.emit("customer.updated", ev.customer_updated(customer_id, name), now)

    _actions: list[Callable[[World, datetime], None]] = [
        _order,
        _older_invoice,
        _receipt,
        _adjust,
        _return,
        _update_product,
        _update_customer,
    ]
    _action_weights = list(itertools.accumulate((45, 4, 7, 2, 2, 1.5, 1)))
